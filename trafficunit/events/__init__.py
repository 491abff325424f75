"""Read accidents, hazards and road works from the files people actually produce.

:func:`read_events` maps a file's columns onto one of three standard schemas and returns a
GeoDataFrame in EPSG:4326, one row per event. The mapping is the user's to give (column names
differ in every source); :mod:`trafficunit.presets` holds worked examples for real files.

Standard schemas (columns always present, ``<NA>`` where the source has no value):

==============  =============================================================================
kind            columns
==============  =============================================================================
all             ``event_id`` (str, unique), ``kind``, ``road_name``, ``geometry``
``accident``    ``time`` (tz-aware; NaT when only a year is known), ``year``, ``hour`` (Int64),
                ``severity`` (KABCO letter ``K A B C O``), ``deaths``, ``serious_injuries``,
                ``minor_injuries``, ``injuries`` (Int64), ``collision_type``, ``light``,
                ``weather``
``hazard``      ``category``, ``grade`` (``"general"`` | ``"major"``), ``status``,
                ``reported_at`` (tz-aware); point, line or polygon
``workzone``    ``site_code``, ``start``, ``end`` (tz-aware), ``lanes_taken`` (Float),
                ``night_works`` (boolean); point, line or polygon (optionally buffered)
==============  =============================================================================

Source columns not used for a standard field are kept unchanged (prefixed ``src_`` if their
name collides with a standard one).

No silent guesses: a column the user did not name is used for a field only through a preset,
or when it has the field's name (or an alias in :data:`ALIASES`) and its content passes the
field's check. A column of clock times alone is used only with the date column the user names
beside it (``time=["date", "time"]``), else left out or refused; it is never completed with the
date of the run. The read summary in
``.attrs["report"]`` says where every field came from (``fields``) and what was detected
(``encoding``, ``sep``, ``crs``, ``tz`` with ``tz_how``, ``time_built``).

What real files throw at an importer, and what happens here:

- CSV separator sniffed (``, ; tab |``) unless given; UTF-8 with or without BOM, else the
  most plausible of GB18030, Big5 and cp1252 (charset-normalizer, then checked against the
  whole file); quoted fields with separators and newlines; stray spaces around values and
  names; decimal commas (``"25501661,91"``) and thousands separators in numbers.
- Times written without a zone are local time where the event happened: the zone is looked
  up from the coordinates (timezonefinder) unless ``tz=`` is given.
- GeoJSON, GeoPackage, Shapefile, FlatGeobuf, GeoParquet (geometry and CRS from the file), plain
  Parquet, or a (Geo)DataFrame.
- Positions from x/y columns in any CRS pyproj knows (``crs=3879``, ``"EPSG:27700"``, CGCS2000
  ``4490`` and its Gauss-Krüger zones), from the Chinese consumer-map systems ``crs="gcj02"``
  / ``"bd09"`` (see :mod:`trafficunit.chinacrs`), or from a WKT/EWKT column (``geometry=``),
  falling back to x/y where that column is empty.
- Every dropped row is counted by reason in ``events.attrs["report"]``: ``missing
  coordinates``, ``unparseable coordinates``, ``coordinates (0, 0)``, ``x and y swapped``,
  ``degrees given for a CRS in metres``, ``outside the valid area``, ``far outside the data's
  extent``, ``bad time``, ``time without a date``, ``dated in the future``, ``dated before
  1900``, ``missing severity``, ``unknown severity``, ``unknown grade``, ``duplicate id``. A warning
  says how many were dropped; ``strict=True`` raises instead.

Layout: :mod:`.reader` holds :func:`read_events` and runs the stages of one read in order:
load (:mod:`.loading`: formats and encodings) and find which column is which field
(:mod:`.columns`), positions (:mod:`.position`, on :mod:`.coords`), time zones
(:mod:`.timezones`), field values and ids (:mod:`.fields`, on :mod:`.values`), then drops, the
read summary and the output frame (:mod:`.assemble`). :mod:`.schema` holds the fields, aliases
and default value maps; :mod:`.report` the state of one read and its summary.
"""

from __future__ import annotations

from .loading import ENCODING_CANDIDATES
from .reader import read_events
from .schema import ALIASES, FIELDS, GRADE_DEFAULTS, KABCO, SEVERITY_DEFAULTS
from .schema import ValueMap as ValueMap
from .timezones import zones_at
from .values import clock_only, to_float

__all__ = [
    "ALIASES",
    "ENCODING_CANDIDATES",
    "clock_only",
    "zones_at",
    "FIELDS",
    "SEVERITY_DEFAULTS",
    "GRADE_DEFAULTS",
    "read_events",
    "to_float",
    "KABCO",
]
