"""The contenders of the real-peer comparison (bench/peer_phase.py): one small script per library,
each run as its own process. Each writes the leadership journal's lines (bench/peers/record.py) at
the moment it starts and stops acting as leader, so one measurement serves every side."""
