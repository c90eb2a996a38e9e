"""One upskill session: its state (`state.Session`) and the two plugin objects `plugin.py`
registers at configure time, as xdist registers its `DSession`: `samples.SampleRunner` runs the
samples, `records.RecordKeeper` gathers their records and writes the reports."""
