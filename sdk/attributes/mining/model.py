"""The label model: many functions' votes -> one label per product, with a confidence.

Votes are a matrix ``L`` (products x functions) of label indices, ``-1`` where a function
abstains. Two ways to combine them:

- :func:`majority_vote` (the baseline): the label most functions voted; a tie, or no vote, is
  no label; the confidence is the winner's share of the votes.
- :class:`DawidSkene`: a weighted vote whose weights are each function's accuracy, estimated
  from how the functions agree (the "one-coin" Dawid-Skene model, fitted by EM; no gold
  needed). A function ``j`` voting is right with probability ``a_j`` and otherwise votes one of
  the other ``k - 1`` labels uniformly; abstaining says nothing. The posterior of label ``y`` for
  one product is then proportional to::

      prior[y] * prod_j  (a_j if L[i, j] == y else (1 - a_j) / (k - 1))   over voting j

  so the weight of a vote is ``log(a_j (k - 1) / (1 - a_j))``. EM starts from the majority
  vote, alternates posterior (E) and accuracies (M: the posterior mean under a Beta(4, 1)
  prior on each accuracy: a vendor claim is taken to be right 4 times in 5 until agreement
  says otherwise) and stops when the accuracies move less than ``tol``. Products with no vote stay unlabeled; products whose
  votes conflict get a label only when the weighted vote is confident enough
  (``min_confidence``, applied by the caller).

The class prior is uniform, not estimated: when each function votes one label (keyword
functions do), EM trades a rare label's prior against its functions' accuracies and drives both
down together (measured on the synthetic catalog: the ``sleeveless`` functions fell to an
estimated accuracy of 0.18 and the label vanished). With a uniform prior a lone vote's
confidence is its function's accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ABSTAIN = -1
PRIOR_RIGHT, PRIOR_WRONG = 4.0, 1.0
"""The Beta prior on each function's accuracy (pseudo-counts of right and wrong votes). A
function that never overlaps another has no agreement to learn from and keeps the prior mean,
0.8: above the default ``--min-confidence`` (0.7), so its lone votes count; with a Beta(2, 1)
prior (mean 2/3) no product of such functions was mined at all."""


def vote_matrix(votes: list[list[str | None]], labels: list[str]) -> np.ndarray:
    """``votes[j][i]`` (function j, product i) as the ``(products, functions)`` index matrix."""
    index = {label: k for k, label in enumerate(labels)}
    n = len(votes[0]) if votes else 0
    matrix = np.full((n, len(votes)), ABSTAIN, dtype=np.int64)
    for j, column in enumerate(votes):
        for i, vote in enumerate(column):
            if vote is not None:
                matrix[i, j] = index[vote]
    return matrix


def _one_hot_counts(L: np.ndarray, k: int) -> np.ndarray:
    counts = np.zeros((L.shape[0], k))
    for j in range(L.shape[1]):
        voted = L[:, j] != ABSTAIN
        np.add.at(counts, (np.nonzero(voted)[0], L[voted, j]), 1.0)
    return counts


def majority_vote(L: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(label index or -1, confidence)`` per product: the plurality label; ties and products
    without votes get ``-1`` (confidence 0)."""
    counts = _one_hot_counts(L, k)
    total = counts.sum(1)
    best = counts.argmax(1) if k else np.zeros(len(L), dtype=np.int64)
    top = counts.max(1) if k else np.zeros(len(L))
    tie = (counts == top[:, None]).sum(1) > 1
    labels = np.where((total > 0) & ~tie, best, ABSTAIN)
    confidence = np.where(labels >= 0, top / np.maximum(total, 1), 0.0)
    return labels, confidence


@dataclass
class DawidSkene:
    """The one-coin Dawid-Skene label model (module docstring); :meth:`fit` then :meth:`predict`."""

    k: int
    max_iter: int = 100
    tol: float = 1e-5
    accuracy: np.ndarray | None = None
    """Estimated accuracy of each function (fitted)."""
    prior: np.ndarray | None = None
    """The class prior: uniform (module docstring)."""
    iterations: int = 0

    def fit(self, L: np.ndarray) -> DawidSkene:
        n, m = L.shape
        k = self.k
        covered = (L != ABSTAIN).any(1)
        counts = _one_hot_counts(L[covered], k)
        q = counts / np.maximum(counts.sum(1, keepdims=True), 1)  # start: the soft majority vote
        accuracy = np.full(m, PRIOR_RIGHT / (PRIOR_RIGHT + PRIOR_WRONG))
        prior = np.full(k, 1 / k)
        for iteration in range(1, self.max_iter + 1):
            self.iterations = iteration
            # M: each function's accuracy is the posterior mass of the labels it voted
            new = np.empty(m)
            for j in range(m):
                voted = L[covered, j] != ABSTAIN
                mass = q[voted, L[covered][voted, j]].sum()
                new[j] = (mass + PRIOR_RIGHT) / (voted.sum() + PRIOR_RIGHT + PRIOR_WRONG)
            new = np.clip(new, 1e-3, 1 - 1e-3)
            q = self._posterior(L[covered], new, prior)
            moved = np.abs(new - accuracy).max() if m else 0.0
            accuracy = new
            if moved < self.tol:
                break
        self.accuracy, self.prior = accuracy, prior
        return self

    def _posterior(self, L: np.ndarray, accuracy: np.ndarray, prior: np.ndarray) -> np.ndarray:
        k = self.k
        right = np.log(accuracy)
        wrong = np.log((1 - accuracy) / max(k - 1, 1))
        scores = np.tile(np.log(prior), (len(L), 1))
        for j in range(L.shape[1]):
            voted = L[:, j] != ABSTAIN
            scores[voted] += wrong[j]
            scores[np.nonzero(voted)[0], L[voted, j]] += right[j] - wrong[j]
        scores -= scores.max(1, keepdims=True)
        p = np.exp(scores)
        return p / p.sum(1, keepdims=True)

    def weights(self) -> np.ndarray:
        """Each function's vote weight, ``log(a (k - 1) / (1 - a))``."""
        assert self.accuracy is not None, "fit the label model first"
        a = self.accuracy
        return np.log(a * max(self.k - 1, 1) / (1 - a))

    def predict(self, L: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(label index or -1, confidence)`` per product; ``-1`` where no function voted."""
        assert self.accuracy is not None and self.prior is not None, "fit the label model first"
        p = self._posterior(L, self.accuracy, self.prior)
        covered = (L != ABSTAIN).any(1)
        labels = np.where(covered, p.argmax(1), ABSTAIN)
        return labels, np.where(covered, p.max(1), 0.0)

    def predict_proba(self, L: np.ndarray) -> np.ndarray:
        """The posterior over labels per product (the prior where no function voted)."""
        assert self.accuracy is not None and self.prior is not None, "fit the label model first"
        return self._posterior(L, self.accuracy, self.prior)


__all__ = ["ABSTAIN", "DawidSkene", "majority_vote", "vote_matrix"]
