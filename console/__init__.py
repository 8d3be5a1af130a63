"""The operator's console: report output (output.py), summaries (summary.py), the call list
(calls.py), charts (charts.py) and sniff's live status (live.py). Library code: no CLI imports;
cli_reports.py wires it to `sipprobe report`."""
