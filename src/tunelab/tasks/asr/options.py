"""The speech-recognition family's options (speech-accents, asr)."""

from ...config import declare, opt


@declare("asr", "task family", reads=("family:asr",))
class AsrOptions:
    max_new_tokens: int = opt(128, "asr: most tokens generated per utterance (greedy decoding, no timestamps)", min=1)
    language: str = opt(None, "asr: spoken language of a multilingual Whisper (e.g. en); sets the prompt of training "
                              "labels and of generate (default: the model's generation config)")
    audio_column: str = opt("audio", "asr: audio column of a hub dataset", reads=("task:asr",))
