"""`nasbert quickstart`: the whole pipeline at toy scale on generated data (`synthetic.py`)."""
