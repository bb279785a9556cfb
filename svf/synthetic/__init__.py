"""The synthetic benchmark of the CPU demo and the study, apart from the real PASCAL/COCO preparation (svf.data):

- ``looks``: the classes' shapes, textures and colours, and how objects are drawn;
- ``raw``: synthetic PASCAL VOC2012 + SBD and COCO 2014 written in the real archives' layouts (``svf synth``), which
  ``svf prepare`` and ``svf splits`` then read exactly like the real downloads;
- ``objects``: the stand-in for ImageNet, object-centric images of every class look (``svf pretrain``).
"""
