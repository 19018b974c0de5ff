"""atbench: a benchmark suite with a standardized leaderboard for adversarial-training defenses."""
