"""Speech recognition with Whisper (speech-accents, asr): the tasks (``task``), audiofolder / hub
readers (``audiofolder``), the text normaliser (``text``), the offline Whisper weights converted from
CTranslate2 (``whisper``) and the report's before/after section (``report``)."""

from . import report, task, whisper  # noqa: F401  (registers the tasks, metrics, head, aliases, report section)
