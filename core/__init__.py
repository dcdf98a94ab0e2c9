"""RecLens core: data loading, models and evaluation, free of any UI code."""
