"""Which cells are guided jointly, by analogy or compositionally."""

import numpy as np
import pandas as pd
import pytest

from scvi_diffusion.generation._analogy import (
    TrainingCombinations,
    guided_counts,
    plan_analogy,
    plan_new_cell_analogy,
)

PATIENTS = ["P1", "P2", "P3", "P4"]
DRUGS = ["ctrl", "drug"]


def training_cells(sizes: dict) -> pd.DataFrame:
    rows = [(p, d) for (p, d), n in sizes.items() for _ in range(n)]
    frame = pd.DataFrame(rows, columns=["patient", "drug"])
    return frame.assign(
        patient=pd.Categorical(frame["patient"], categories=PATIENTS),
        drug=pd.Categorical(frame["drug"], categories=DRUGS),
    )


def cells(values: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(values, columns=["patient", "drug"])


# P3's treated cells are held out; P4 has too few treated cells to show the change
TRAINING = training_cells(
    {
        ("P1", "ctrl"): 30,
        ("P1", "drug"): 20,
        ("P2", "ctrl"): 40,
        ("P2", "drug"): 50,
        ("P3", "ctrl"): 30,
        ("P4", "ctrl"): 30,
        ("P4", "drug"): 5,
    }
)
KEYS = ["patient", "drug"]
COMBINATIONS = TrainingCombinations.of(TRAINING, KEYS)
SCALES = {"patient": 1.5, "drug": 3.0}


def test_an_unseen_combination_takes_the_change_from_the_groups_that_show_it():
    own = cells([("P3", "ctrl"), ("P1", "ctrl"), ("P4", "ctrl")])
    target = own.assign(drug="drug")
    analogy = plan_analogy(own, target, COMBINATIONS, SCALES)
    # P3 -> drug is unseen: by analogy; P1 -> drug is seen (joint); P4 -> drug has 5 cells,
    # fewer than the joint model needs, so by analogy too
    np.testing.assert_array_equal(analogy.cells, [True, False, True])
    np.testing.assert_array_equal(analogy.base, [[2, 0], [0, 0], [3, 0]])
    # the groups with both values seen, the best covered first: P2 (40, 50), then P1 (30, 20)
    np.testing.assert_array_equal(analogy.target[:, 0], [[1, 1], [0, 1]])
    np.testing.assert_array_equal(analogy.source[:, 0], [[1, 0], [0, 0]])
    np.testing.assert_allclose(analogy.coefficients[:, 0], [1.5, 1.5])  # scale 3 over 2
    np.testing.assert_allclose(analogy.coefficients[:, 1], [0.0, 0.0])
    joint = np.array([False, True, False])
    assert guided_counts(joint, analogy) == {"joint": 1, "analogy": 2, "compositional": 0}


@pytest.mark.parametrize(
    ("own", "target"),
    [
        (("P3", "drug"), ("P3", "ctrl")),  # the own combination is unseen
        (("P1", "drug"), ("P1", "drug")),  # nothing changes
        (("P3", None), ("P3", "drug")),  # the own value is unknown
    ],
)
def test_no_analogy_without_a_seen_starting_point(own, target):
    assert plan_analogy(cells([own]), cells([target]), COMBINATIONS, SCALES) is None
    assert guided_counts(np.array([False]), None) == {
        "joint": 0,
        "analogy": 0,
        "compositional": 1,
    }


def test_new_cells_of_an_unseen_combination_start_from_the_neighbour_most_groups_explain():
    """(P3, drug): its neighbour (P3, ctrl) changes the drug, which two patients show; (P1,
    drug) or (P2, drug) would change the patient, which only the control group shows."""
    target = cells([("P3", "drug"), ("P1", "drug"), ("P4", "drug")])
    analogy = plan_new_cell_analogy(target, COMBINATIONS, SCALES)
    # (P1, drug) is seen: joint guidance, not analogy
    np.testing.assert_array_equal(analogy.cells, [True, False, True])
    np.testing.assert_array_equal(analogy.base[[0, 2]], [[2, 0], [3, 0]])
    # the drug's change from P2 and P1 (scale 3 over 2), then the patient sharpened given
    # the neighbour: (P3, ctrl) against (P3 dropped, ctrl) at scale 1.5 - 1
    np.testing.assert_array_equal(analogy.target[:, 0], [[1, 1], [0, 1], [2, 0]])
    np.testing.assert_array_equal(analogy.source[:, 0], [[1, 0], [0, 0], [4, 0]])
    np.testing.assert_allclose(analogy.coefficients[:, 0], [1.5, 1.5, 0.5])
    assert guided_counts(np.array([False, True, False]), analogy) == {
        "joint": 1,
        "analogy": 2,
        "compositional": 0,
    }


def test_new_cells_keep_compositional_guidance_without_a_neighbour_that_groups_explain():
    # no patient has both a seen control and a seen treated slice besides P3 itself
    training = TrainingCombinations.of(
        training_cells({("P1", "ctrl"): 30, ("P2", "ctrl"): 30, ("P3", "drug"): 30}), KEYS
    )
    assert plan_new_cell_analogy(cells([("P1", "drug")]), training, SCALES) is None
    # a scale of 1 sharpens nothing: only the change's pairs
    analogy = plan_new_cell_analogy(
        cells([("P3", "drug")]), COMBINATIONS, {**SCALES, "patient": 1.0}
    )
    np.testing.assert_allclose(analogy.coefficients[:, 0], [1.5, 1.5])
