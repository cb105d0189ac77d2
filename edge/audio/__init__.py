"""Audio in: files and streams (:mod:`.io`), resampling (:mod:`.resample`), live sources and their
supervision (:mod:`.live`), the capture clock (:mod:`.clock`)."""
