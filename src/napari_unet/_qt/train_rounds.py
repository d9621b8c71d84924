"""The Train dock's rounds: each Fine-tune kept in the project, and going back to one."""

from __future__ import annotations

from functools import partial
from typing import Any

from napari.utils.notifications import show_error, show_info, show_warning

from ..postprocess.describe import describe_model_rule
from ..training.first_sight import FILE_NAME
from .model_choice import CURRENT
from .workers import UserProblem


class TrainRounds:
    """Rounds of the project's history in the Train dock (a mixin of ``TrainWidget``).

    A finished Fine-tune is kept as the project's next round (off the GUI thread);
    a round the guard found worse is kept but not put in use; any round can be
    put in use again.
    """

    def _on_project(self, *_: Any) -> None:
        project = self._project.project
        try:
            self.history.show_history(project.history if project is not None else None)
        except ValueError as exc:  # a damaged history.json: say so, show no rounds
            show_error(str(exc))
            self.history.show_history(None)
        if project is not None:  # its paint is judged as in the sessions before
            self._workers.start_function(
                partial(self.first_sight.load, project.folder / FILE_NAME),
                errored=lambda exc: show_warning(str(exc)),
            )

    def _round_trainer(self) -> Any:
        """The trainer of the round that just ended: live training's, else Fine-tune's."""
        return getattr(self, "_live_trainer", None) or self._runner.trainer

    def _record_round(self, model: Any, last: Any, verdict: Any) -> None:
        """Keep this Fine-tune as the project's next round (model, scores), off the GUI thread.

        A round the guard found worse (``verdict.worse``) is kept but not put in use.
        """
        target = getattr(self, "_target", None)
        trainer = self._round_trainer()
        if target is None or trainer is None:
            return
        try:
            project = self._project.ensure(target)
        except ValueError as exc:
            show_error(f"The round could not be kept in a project: {exc}")
            return
        v = last.validation
        info = dict(
            start_model=getattr(self, "_start_label", "scratch"),
            cells=sum(s["cells"] for s in trainer.data.summary),
            steps=last.step,
            seconds=round(float(last.elapsed), 1),
            ap50=None if v is None else round(v.ap50, 4),
            mean_iou=None if v is None else round(v.mean_iou, 4),
            val_cells=0 if v is None else int(v.n_true),
            entries=list(self._trained_names),
            start_ap50=None if verdict.start is None else round(verdict.start.ap50, 4),
            start_mean_iou=None if verdict.start is None else round(verdict.start.mean_iou, 4),
            objects=describe_model_rule(model),
        )
        history = project.history
        self._workers.start_function(
            partial(history.add_round, model, make_current=not verdict.worse, **info),
            returned=lambda record: self._on_round(history, model, record, verdict),
            errored=lambda exc: show_error(f"The round could not be saved: {exc}"),
        )
        # the first judgement of the paint, so that a reopened project judges it the same
        self._workers.start_function(
            partial(self.first_sight.save, project.folder / FILE_NAME),
            errored=lambda exc: show_warning(
                f"The first judgement of painted cells could not be kept in the project "
                f"({exc}); after reopening it, they are judged by the model then in use."
            ),
        )

    def _on_round(self, history: Any, model: Any, record: Any, verdict: Any) -> None:
        if isinstance(record, UserProblem):
            show_error(f"The round could not be saved: {record.message}")
            return
        self.history.show_history(history)
        if verdict.worse:
            sentence = verdict.sentence(f"Round {record.round}")
            self._status.value = sentence
            self.guard.offer(record.round, sentence)
            show_info(f"{sentence} Use round {record.round} anyway?")
            return
        self._model_round = (model, record.round)

    def use_round(self, k: int) -> None:
        """Make round ``k``'s model the one in use again (read in a worker)."""
        project = self._project.project
        if project is None:
            return
        history = project.history

        def load() -> Any:
            model = history.load_model(k)
            history.set_current(k)
            return model

        def done(model: Any) -> None:
            if isinstance(model, UserProblem):
                show_error(model.message)
                return
            self._session.set_model(model, f"round {k} of the project")
            self._model_round = (model, k)
            self._start.value = CURRENT
            self.history.show_history(history)
            show_info(f"Round {k}'s model is in use again.")

        self._workers.start_function(load, returned=done, errored=lambda e: show_error(str(e)))
