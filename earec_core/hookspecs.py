"""The hook specifications every EARec plugin implements a subset of.

A plugin is a module (or object) registered under the ``earec`` entry-point group whose
functions are marked with :data:`hookimpl`.  Each hook receives a ``register`` callback,
in the style of simonw/llm's ``register_models``, so one plugin can contribute many things::

    from earec_core import hookimpl

    @hookimpl
    def earec_register_modalities(register):
        register(AudioModality)
"""

import pluggy

hookspec = pluggy.HookspecMarker("earec")
hookimpl = pluggy.HookimplMarker("earec")


@hookspec
def earec_register_modalities(register):
    """Register modality classes.

    Call ``register(cls)`` once per :class:`earec_core.modality.Modality` subclass; the class's
    ``name`` is the key users type (``earec align --modality NAME``).
    """


@hookspec
def earec_register_recommenders(register):
    """Register recommender classes.

    Call ``register(cls)`` once per :class:`earec_core.recommender.Recommender` subclass.
    """
