"""The pipeline: data, tracks, protocols, jobs, training, evaluation, analysis and the executors."""
