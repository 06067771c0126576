"""The CVAT contract: what the Nuclio function (main.py, model_handler.py) and the CVAT SDK function
share on top of the pose library.

- :mod:`alphapose.cvat.settings`: the ``ALPHAPOSE_*`` settings, checked, with errors naming the setting;
- :mod:`alphapose.cvat.request`: a request body to a validated image and options (4xx on bad input);
- :mod:`alphapose.cvat.formats`: poses to the answer CVAT reads (skeletons) or AlphaPose's own results;
- :mod:`alphapose.cvat.spec`: the label spec CVAT reads from the function's metadata;
- :mod:`alphapose.cvat.errors`: the exceptions of this layer;
- :mod:`alphapose.cvat.sdk_function`: the CVAT SDK function that ``cvat-cli`` runs (the only module that
  imports ``cvat_sdk``, the ``cvat`` extra; not staged into the Nuclio images).
"""
