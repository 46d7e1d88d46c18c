"""Reading and writing: landing files, row parsing, Delta commits, subject store, audit, reports.

No policy decisions here: callers (the pipeline) decide, this layer moves bytes.
"""
