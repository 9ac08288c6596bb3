"""The app layer: what the GUI (and any other front end) talks to.

- :mod:`core.app.settings`: :class:`~core.app.settings.RunSettings` (model, device, PKR, threshold, mode), the one
  frozen, checked object a run is made with, and :class:`~core.app.settings.ModelSpec`;
- :mod:`core.app.document`: the document (clip, run settings, results, a person's edits, undo stack, journal);
- :mod:`core.app.studio`: the model passes of the app (model store, one pass over a clip, result cache);
- :mod:`core.app.run_control`: when a pass starts, restarts or is cancelled, and which results are shown;
- :mod:`core.app.review_state`: the review against a ground truth;
- :mod:`core.app.clips`: opening a clip (and the demo clip); :mod:`core.app.display_frames`: its frames at the
  view's resolution; :mod:`core.app.models`: the authors' released models and getting one;
  :mod:`core.app.sweeps`: the PKR sweep the app runs.

The GUI imports from this package (and :mod:`core.errors`) only.

It sits above the data, formats, model and session layers and below ``core.commands`` and ``vpp_gui``.
"""
