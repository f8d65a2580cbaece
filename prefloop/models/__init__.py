"""Models: the embedded defaults (`default`), tiny test models (`tiny`), loading/LoRA/saving (`load`).

Import the submodules directly (`from prefloop.models.load import load_causal_lm`); this
package itself imports nothing heavy.
"""
