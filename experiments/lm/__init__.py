"""A small character-level transformer LM, its data and its activations."""
