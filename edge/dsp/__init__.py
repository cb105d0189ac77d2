"""Signal processing: MFCC (:mod:`.features`), speech gating (:mod:`.vad`), the front end pairing them
(:mod:`.frontend`), normalisation (:mod:`.normalize`). Pure numpy/scipy: no I/O, no runtime."""
