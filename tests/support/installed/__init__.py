"""Scripts run by tests/test_wheel.py inside a fresh venv that holds the built wheel (and at most
one extra): they import the installed library only, never tests/ or src/."""
