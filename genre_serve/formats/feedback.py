"""The feedback log: what users did with what was recommended, in the
training data's own format, for `genre-serve update` to read (issue 16).

A log is a directory of CSV (or Parquet) files with the columns of a
training interactions file, ``user_id,item_id,timestamp,event,scenario``,
plus ``version``: the genre_recommend version that recommended the item
(empty if unknown). Training ignores the extra column. Timestamps are Unix
seconds.

Any writer may add files: the SDK's :class:`~genre_serve.client.feedback.FeedbackLog`
appends to ``events-YYYYMMDD.csv`` (one file per UTC day, several processes
at once), and an event pipeline (Kafka -> an object-store sink) can write
its own part files with the same header beside them. A reader takes every
``*.csv``, ``*.csv.gz`` and ``*.parquet`` file of the directory, in name order.
"""

COLUMNS = ("user_id", "item_id", "timestamp", "event", "scenario", "version")
FILE_PATTERNS = ("*.csv", "*.csv.gz", "*.parquet")
DAILY_FILE = "events-{day}.csv"  # day: YYYYMMDD, UTC
