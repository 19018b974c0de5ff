"""Records and leaderboards: the record schema (`schema`), loading (`records`), the board
builder (`build`) and plots (`plot`). Reads records only; never imports torch."""
