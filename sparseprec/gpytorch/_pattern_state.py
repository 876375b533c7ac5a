"""The sparsity pattern in a module's state dict: values saved on one pattern must not load onto another.

A module whose stored values sit on a fixed sparsity pattern (a sparse factor's entries, a sparse precision's
entries) registers the pattern as an int64 ``(2, nnz)`` buffer of ``(row, column)`` pairs, one per stored value, and
checks it in ``_load_from_state_dict`` with :func:`pattern_state_problems` and :func:`refuse_state`: a state dict
saved with another pattern, or without a pattern, is refused (``load_state_dict`` raises ``RuntimeError``) rather than
loading the values onto entries they were not saved for.
"""

from __future__ import annotations

import torch

__all__ = ["pattern_state_problems", "refuse_state"]


def pattern_state_problems(
    state_dict: dict,
    prefix: str,
    ours: torch.Tensor,
    *,
    pattern_name: str,
    values_name: str,
    owner: str,
    matrix: str,
    size: str,
    consequence: str,
    restore: str,
) -> list[str]:
    """What in ``state_dict`` (keys under ``prefix``) contradicts the module's pattern buffer ``ours``.

    Parameters
    ----------
    state_dict : dict
        The state dict being loaded.
    prefix : str
        The module's key prefix in it.
    ours : torch.Tensor
        The module's ``(2, nnz)`` int64 pattern buffer (row and column of each stored value).
    pattern_name, values_name : str
        The buffer's name and the name of the values it describes.
    owner : str
        What the module is, for the messages (``"distribution"``, ``"noise"``).
    matrix : str
        The matrix whose entries the values are (``"L"``, ``"G"``).
    size : str
        The pattern's size in words, shown when the saved pattern has another shape.
    consequence : str
        What loading the values onto another pattern of the same size would do.
    restore : str
        The entries of ``state_dict()`` to add to an old state dict (saved without a pattern) to load it.

    Returns
    -------
    list of str
        One message per problem (empty: nothing contradicts the pattern). A state dict holding ``values_name``
        without ``pattern_name`` is a problem: its pattern is unknown.
    """
    key = prefix + pattern_name
    if key not in state_dict:
        if prefix + values_name not in state_dict:
            return []  # a partial state dict without the values: nothing to check
        return [
            f"{key!r} is missing (a state dict saved before sparseprec stored the pattern), so its {values_name} "
            f"cannot be checked against this {owner}'s pattern; if it was saved from a {owner} with this pattern"
            f"{restore}"
        ]
    saved = state_dict[key]
    if not isinstance(saved, torch.Tensor) or saved.shape != ours.shape:
        shape = tuple(saved.shape) if isinstance(saved, torch.Tensor) else type(saved).__name__
        return [
            f"{key!r} must be this {owner}'s pattern, of shape {tuple(ours.shape)} ({size}), got {shape}; build the "
            f"{owner} with the saved pattern before loading"
        ]
    saved = saved.to(ours.device, torch.int64)
    if torch.equal(saved, ours):
        return []
    k = int(torch.nonzero((saved != ours).any(0))[0])
    return [
        f"{key!r} must be this {owner}'s pattern; entry {k} of {matrix} must be at {tuple(ours[:, k].tolist())}, got "
        f"{tuple(saved[:, k].tolist())} (same size, another pattern: {consequence}); build the {owner} with the saved "
        "pattern before loading"
    ]


def refuse_state(error_msgs: list, owner_class: str, problems: list[str]) -> bool:
    """Record ``problems`` in ``error_msgs`` (so ``load_state_dict`` raises ``RuntimeError``); ``True`` if any.

    torch passes ``strict=True`` to ``_load_from_state_dict`` whatever the caller's ``strict``, so a refusal holds for
    ``strict=False`` too; the caller then loads nothing of this module.
    """
    error_msgs.extend(f"{owner_class}: {problem}" for problem in problems)
    return bool(problems)
