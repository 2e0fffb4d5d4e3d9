"""The experiment suite of "Learning to Minimize the Remainder in Supervised Learning" (Luo,
Wong, Kankanhalli and Zhao), built on the GAL library (:mod:`gal`): run records
(:mod:`gal_suite.records`), configs (:mod:`gal_suite.config`), the statistics of runs and the
verdict rule (:mod:`gal_suite.stats`, :mod:`gal_suite.sequential`), the paper's numbers
(:mod:`gal_suite.paper_values`), the names of optimizers, methods and datasets
(:mod:`gal_suite.vocab`), Tables I-VIII (:mod:`gal_suite.tables`), Figs. 4-8
(:mod:`gal_suite.figures`) and the ``gal`` command (:mod:`gal_suite.cli`). It needs the
``suite`` extra (``pip install '.[suite]'``); the library needs torch alone and never imports
the suite.
"""
