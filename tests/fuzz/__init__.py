"""Fuzzing the sans-I/O core: one target (`core_target.run`) for hypothesis and for atheris."""
