"""Peer queues for the drain comparison, run only inside bench/.venv-peers.

Each module here is a standalone script executed by the peers' interpreter; nothing in it
is imported by mi-worker or by the harness (the harness only passes file paths).
"""
