"""SQLite storage of acc, missed_calls and acc_cdrs rows (arrives with the accounting layer)."""
