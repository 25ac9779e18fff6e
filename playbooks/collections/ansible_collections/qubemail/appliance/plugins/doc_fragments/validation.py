# -*- coding: utf-8 -*-
"""Documentation the qubemail validation filters share."""


class ModuleDocFragment:
    """The collect option of every checking filter, and the base option of
    those that check against qubemail_base's output."""

    DOCUMENTATION = r"""
options:
  collect:
    description:
      - Return C({config, errors}) instead of raising; C(config) is the result or V(null), C(errors) a list of
        dicts with C(field), C(variable), C(value) (as shown, secrets redacted), C(problem) and C(line).
      - The play's validation (roles/qubemail/tasks/validate.yml) uses it to report every problem at once.
    type: bool
    default: false
"""

    BASE = r"""
options:
  base:
    description: The output of P(qubemail_base#filter).
    type: dict
    required: true
"""
