"""End-to-end tests: Flask, Django and FastAPI apps behind a real nginx terminating mTLS."""
