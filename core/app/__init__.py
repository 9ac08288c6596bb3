"""The app layer: what the GUI (and any other front end) talks to.

- :mod:`core.app.document`: the document (clip, run settings, results, a person's edits, undo stack, journal);
- :mod:`core.app.studio`: the model passes of the app (model store, one pass over a clip, result cache);
- :mod:`core.app.run_control`: when a pass starts, restarts or is cancelled, and which results are shown;
- :mod:`core.app.review_state`: the review against a ground truth.

It sits above the data, formats, model and session layers and below ``core.commands`` and ``vpp_gui``.
"""
