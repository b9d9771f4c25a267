"""Small image classifiers and their data, for the unlearning family."""
