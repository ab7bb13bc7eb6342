"""``rtatl-train``: train RTATL (or a Table 1 variant) on a prepared cache.

    rtatl-train --config training/configs/bp4d.yaml data.fold=2 model.variant=ofe
    torchrun --nproc-per-node 4 -m training.train --config ...   # multi-GPU / multi-node

Each step: one labelled batch (+ one unlabelled batch) -> generator step (backbone, G, flow
head: L_Sup + L_G + lambda_f L_F) -> discriminator step (D, C: L_D + L_C), Adam lr 3e-4 (Eq. 9).
Checkpoints are atomic and hold everything needed to resume exactly: the data order and every
random draw derive from (seed, step), so a resumed run repeats the same losses.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from rtatl_sdk.contract.au import AU_SETS
from rtatl_sdk.errors import RTATLError, TrainingError

from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig, load_config
from .devices import resolve_device as _device

log = logging.getLogger("rtatl.train")


class BatchStream:
    """Deterministic batches: epoch e uses permutation(seed, e), sharded by rank; step -> batch."""

    def __init__(self, dataset, batch_size: int, seed: int, rank: int = 0, world: int = 1, workers: int = 0,
                 pin_memory: bool = False):
        self.ds, self.bs, self.seed, self.rank, self.world, self.workers = dataset, batch_size, seed, rank, world, workers
        self.pin_memory = pin_memory  #: page-locked batches, so non_blocking copies to a GPU overlap
        per_rank = len(dataset) // world
        self.per_epoch = per_rank // batch_size
        if self.per_epoch == 0:
            raise TrainingError(f"{len(dataset)} samples are fewer than one batch of {batch_size} per process ({world} processes)")
        self._iter = None
        self._at = None
        self.loaders_made = 0  #: DataLoaders (and sets of worker processes) started so far

    def _batches(self, epoch: int) -> list[list[int]]:
        perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.ds))
        mine = perm[self.rank::self.world][: self.per_epoch * self.bs]
        return [mine[i * self.bs:(i + 1) * self.bs].tolist() for i in range(self.per_epoch)]

    def _from(self, step: int):
        """Batches of ``(epoch, index)`` keys from global step ``step`` on, epoch after epoch."""
        epoch, offset = divmod(step, self.per_epoch)
        while True:
            for batch in self._batches(epoch)[offset:]:
                yield [(epoch, i) for i in batch]
            epoch, offset = epoch + 1, 0

    def get(self, step: int) -> dict:
        """The batch of global step ``step`` (sequential access is fast; any step works). One
        loader, and its workers, serve every epoch of a sequential run: each sample carries its
        epoch (its augmentation's seed), so a new epoch starts no new worker processes."""
        from torch.utils.data import DataLoader

        from .data.dataset import collate

        if self._at != step or self._iter is None:
            self.ds.set_epoch(step // self.per_epoch)
            self._iter = None  # the old loader's workers end with it
            loader = DataLoader(self.ds, batch_sampler=self._from(step), collate_fn=collate, pin_memory=self.pin_memory,
                                num_workers=self.workers)
            self._iter, self._at = iter(loader), step
            self.loaders_made += 1
        batch = next(self._iter)
        self._at = step + 1
        return batch


def _merge(a: dict, b: dict | None) -> dict:
    import torch

    if b is None:
        return a
    return {k: torch.cat([a[k], b[k]]) for k in a}


def load_scaler_state(scaler, state: dict | None) -> None:
    """Restore a GradScaler. A CPU or amp=false run saves an empty state, which torch refuses to
    load into an enabled scaler: a CUDA run resuming such a checkpoint starts a fresh scale."""
    if state and scaler.is_enabled():
        scaler.load_state_dict(state)


def draw_subjects(subjects, n: int, seed: int) -> list[str]:
    """``n`` of ``subjects`` drawn at random with ``seed`` (Figure 4: 3/9/15/21 training subjects)."""
    import random

    pool = sorted(subjects)
    if n > len(pool):
        raise TrainingError(f"data.train_subjects={n}: only {len(pool)} training subjects are there ({', '.join(pool)})")
    chosen = sorted(random.Random(seed).sample(pool, n))
    log.info("training on %d of %d subjects (seed %d): %s", n, len(pool), seed, ", ".join(chosen))
    return chosen


def keep_labelled_share(index, fraction: float, seed: int) -> None:
    """Limited labels: keep ``fraction`` of the labelled frames of ``index`` (a seeded draw, at
    least one) and drop the rest from the labelled stream, so every batch is still fully
    labelled; the unlabelled data stay as they are (the paper's Figure 4 setting: fewer labelled
    samples, the same unlabelled ones)."""
    n = len(index)
    keep = np.zeros(n, bool)
    keep[np.random.default_rng(seed).permutation(n)[:max(1, round(fraction * n))]] = True
    index.keep(keep)
    log.info("labelled frames kept: %d of %d (data.label_fraction %.2f, seed %d)", int(keep.sum()), n, fraction, seed)


class Trainer:
    """One training run of ``cfg``: ``Trainer(cfg).run()``. Each part of a step is a method:
    ``batch`` (data of a step), ``generator_step`` and ``discriminator_step`` (Eq. 9's
    alternation), ``log`` and ``save``; ``resume`` restores everything ``save`` wrote."""

    def __init__(self, cfg: TrainConfig, progress: bool = True):
        import torch
        import torch.distributed as dist

        self.cfg, self.progress = cfg, progress
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.device = _device(cfg.run.device, int(os.environ.get("LOCAL_RANK", "0")), self.world)
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if cfg.run.threads:
            torch.set_num_threads(cfg.run.threads)
        self.out = Path(cfg.run.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.ckpt_path = self.out / "last.ckpt"
        self.aus = tuple(cfg.data.aus or AU_SETS[cfg.data.dataset])
        self.step, self.skipped = 0, 0
        self._data()
        self._model()

    def _data(self) -> None:
        from .data.dataset import AUDataset, Augment, all_subjects
        from .data.splits import check_present

        cfg, d = self.cfg, self.cfg.data
        self.train_subjects = self.test_subjects = None
        if d.fold is not None:
            self.train_subjects, self.test_subjects = check_present(d.dataset, d.fold, all_subjects(d.cache), d.strict_subjects)
        if d.train_subjects is not None:
            self.train_subjects = draw_subjects(self.train_subjects or all_subjects(d.cache), d.train_subjects, d.subjects_seed)
        augment = Augment(colour_jitter=d.colour_jitter, greyscale=d.greyscale, blur=d.blur, jpeg=d.jpeg, scale=d.scale)
        self.labelled = AUDataset(d.cache, self.train_subjects, train=True, labelled=True, seed=cfg.run.seed, aus=self.aus,
                                  augment=augment)
        if d.label_fraction < 1.0:
            keep_labelled_share(self.labelled.index, d.label_fraction, d.subjects_seed)
        args = (self.rank, self.world, cfg.run.workers, self.device.type == "cuda")
        self.streams = [BatchStream(self.labelled, cfg.optim.batch_size, cfg.run.seed, *args)]
        if d.unlabelled_cache is not None and cfg.model.variant != "backbone":
            unl = AUDataset(d.unlabelled_cache, None, train=True, labelled=False, seed=cfg.run.seed + 1, aus=None, augment=augment)
            unl.aus, unl.cols = self.aus, list(range(len(self.aus)))  # labels unknown; centres for the labelled AU set
            self.streams.append(BatchStream(unl, cfg.optim.unlabelled_batch_size, cfg.run.seed + 1, *args))

    def _model(self) -> None:
        import torch

        from .model import RTATL, count_parameters

        cfg = self.cfg
        torch.manual_seed(cfg.run.seed)
        self.model = model = RTATL(cfg.model, self.aus).to(self.device)
        known = self.labelled.index.labels[:, self.labelled.cols]
        if cfg.model.relation == "gcn":  # Backbone^G: the training labels' co-occurrence graph (a resume reloads it)
            model.backbone.transformer.set_prior(torch.from_numpy(known).to(self.device))
        if cfg.optim.balance_labels:
            pos, neg = (known == 1).sum(0), (known == 0).sum(0)
            model.pos_weight = torch.tensor(np.clip(neg / np.maximum(pos, 1), 0.1, 10.0), dtype=torch.float32, device=self.device)
            log.info("L_Sup positive weights per AU: %s", np.round(model.pos_weight.cpu().numpy(), 2).tolist())
        if self.rank == 0:
            log.info("RTATL variant=%s AUs=%s: inference parameters %.2f M, training graph %.2f M", cfg.model.variant,
                     list(self.aus), count_parameters(model.backbone) / 1e6, count_parameters(model) / 1e6)
        self.opt_g = torch.optim.Adam(model.generator_parameters(), lr=cfg.optim.lr)
        self.opt_d = torch.optim.Adam(model.discriminator_parameters(), lr=cfg.optim.lr) if model.use_roii else None
        self.amp = cfg.run.amp and self.device.type == "cuda"
        self.scaler_g = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.scaler_d = torch.amp.GradScaler("cuda", enabled=self.amp)

    def resume(self) -> None:
        state = load_checkpoint(self.ckpt_path) if self.ckpt_path.is_file() else None
        self._same_start_on_every_rank(state["step"] if state else 0)
        if state is None:
            return
        self.model.load_state_dict(state["model"])
        self.opt_g.load_state_dict(state["opt_g"])
        if self.opt_d is not None:
            self.opt_d.load_state_dict(state["opt_d"])
        load_scaler_state(self.scaler_g, state.get("scaler_g"))
        load_scaler_state(self.scaler_d, state.get("scaler_d"))
        self.step, self.skipped = state["step"], state.get("skipped_steps", 0)
        log.info("resumed from %s at step %d", self.ckpt_path, self.step)

    def _same_start_on_every_rank(self, step: int) -> None:
        """Every rank must resume from the same step. On several nodes ``run.out`` has to be one
        folder all of them see (a shared filesystem): a node that finds no checkpoint, or an
        older one, would otherwise train from another step than the rest and hang or diverge."""
        if self.world == 1:
            return
        import torch
        import torch.distributed as dist

        steps = [torch.zeros(1, dtype=torch.long, device=self.device) for _ in range(self.world)]
        dist.all_gather(steps, torch.tensor([step], dtype=torch.long, device=self.device))
        found = [int(t.item()) for t in steps]
        if len(set(found)) > 1:
            raise TrainingError(f"ranks would start from different steps {found} (rank order): run.out={self.out} "
                                "must be one folder that every node sees (a shared filesystem)")

    def batch(self) -> dict:
        import torch

        batch = self.streams[0].get(self.step)
        if len(self.streams) > 1:
            batch = _merge(batch, self.streams[1].get(self.step))
        # seeded after the data (a new DataLoader draws from the global RNG): dropout and the
        # cropped AU are functions of the step alone, so a resumed run repeats them exactly
        torch.manual_seed(self.cfg.run.seed * 1_000_003 + self.step)
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def all_finite(self, loss) -> bool:
        """Whether the loss is finite on every rank: one rank skipping a backward that the others
        run would hang DistributedDataParallel, so the ranks decide together."""
        finite = math.isfinite(float(loss.detach()))
        if self.world > 1:
            import torch
            import torch.distributed as dist

            flag = torch.tensor([0.0 if finite else 1.0], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            finite = float(flag.item()) == 0.0
        return finite

    def generator_step(self, net, batch: dict):
        """Backbone, G and flow head on L_Sup + L_G + lambda_f L_F; None when the loss is not
        finite and run.nonfinite=skip (the step is then skipped)."""
        import torch

        gen = torch.Generator().manual_seed(self.cfg.run.seed * 7_919 + self.step)
        with torch.autocast(self.device.type, enabled=self.amp):
            g = net(batch, mode="g", gen=gen)
        terms = {k: float(v.detach()) for k, v in g.terms.items()}
        if not self.all_finite(g.total):
            if self.cfg.run.nonfinite == "stop":
                raise TrainingError(f"step {self.step}: non-finite loss {terms}; stopped before updating the weights "
                                    f"(set run.nonfinite=skip to skip such steps); last checkpoint: {self.ckpt_path}")
            self.skipped += 1
            log.warning("step %d: non-finite loss %s; step skipped (%d so far)", self.step, terms, self.skipped)
            self.opt_g.zero_grad(set_to_none=True)
            return None, terms
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler_g.scale(g.total).backward()
        if self.cfg.optim.grad_clip:
            self.scaler_g.unscale_(self.opt_g)
            torch.nn.utils.clip_grad_norm_(self.model.generator_parameters(), self.cfg.optim.grad_clip)
        self.scaler_g.step(self.opt_g)
        self.scaler_g.update()
        return g, terms

    def discriminator_step(self, net, g, terms: dict) -> None:
        """D and C on L_D + L_C (RoII only)."""
        import torch

        if self.opt_d is None:
            return
        self.opt_d.zero_grad(set_to_none=True)  # drop what the G step left on D and C
        with torch.autocast(self.device.type, enabled=self.amp):
            d = net(g, mode="d")
        if self.all_finite(d.total):
            self.scaler_d.scale(d.total).backward()
            self.scaler_d.step(self.opt_d)
            self.scaler_d.update()
            terms.update({k: float(v.detach()) for k, v in d.terms.items()})
        else:
            self.skipped += 1
            log.warning("step %d: non-finite discriminator loss; D step skipped", self.step)

    def log(self, terms: dict, n_images: int, bar) -> None:
        ips = (self.step - self._start_step) * n_images * self.world / max(1e-9, time.time() - self._t0)
        bar.set_postfix(sup=f"{terms['sup']:.3f}", img_s=f"{ips:.1f}")
        for k, v in terms.items():
            self._writer.add_scalar(f"loss/{k}", v, self.step)
        self._writer.add_scalar("speed/images_per_second", ips, self.step)
        row = {"step": self.step, **terms, "images_per_second": round(ips, 2)}
        if self.device.type == "cuda":  # the most this process's tensors have held on its GPU so far
            import torch

            row["gpu_peak_mib"] = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        self._log_file.write(json.dumps(row) + "\n")
        self._log_file.flush()

    def save(self) -> None:
        save_checkpoint(self.ckpt_path, {
            "model": self.model.state_dict(), "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict() if self.opt_d is not None else None,
            "scaler_g": self.scaler_g.state_dict(), "scaler_d": self.scaler_d.state_dict(),
            "step": self.step, "skipped_steps": self.skipped, "config": json.loads(self.cfg.model_dump_json()),
            "aus": list(self.aus), "test_subjects": self.test_subjects, "train_subjects": self.train_subjects,
        })

    def run(self) -> dict:
        import torch.distributed as dist
        from tqdm import tqdm

        cfg, net = self.cfg, self.model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            net = DDP(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                      find_unused_parameters=True)
        if self.rank == 0:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.out / "tb"))
            self._log_file = open(self.out / "log.jsonl", "a")
        bar = tqdm(total=cfg.optim.steps, initial=self.step, desc="rtatl-train", disable=not self.progress or self.rank != 0)
        self.model.train()
        self._t0, self._start_step, history = time.time(), self.step, []
        while self.step < cfg.optim.steps:
            batch = self.batch()
            self.model.set_step(self.step)  # the auxiliary losses' warm-up weight (model.aux_warmup)
            g, terms = self.generator_step(net, batch)
            if g is not None:
                self.discriminator_step(net, g, terms)
                history.append(terms)
            self.step += 1
            if g is None:
                continue
            bar.update(1)
            if self.rank == 0:
                if self.step % cfg.run.log_every == 0 or self.step == cfg.optim.steps:
                    self.log(terms, len(batch["image"]), bar)
                if self.step % cfg.run.ckpt_every == 0 or self.step == cfg.optim.steps:
                    self.save()
        bar.close()
        if self.rank == 0:
            self._log_file.close()
            self._writer.close()
        if self.world > 1:
            dist.barrier()
        return {"steps": self.step, "skipped_steps": self.skipped, "checkpoint": str(self.ckpt_path), "history": history,
                "test_subjects": self.test_subjects}


def train(cfg: TrainConfig, resume: bool = True, progress: bool = True) -> dict:
    """Train ``cfg`` (resuming from ``run.out/last.ckpt`` unless ``resume`` is False)."""
    trainer = Trainer(cfg, progress)
    if resume:
        trainer.resume()
    return trainer.run()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="rtatl-train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=None)
    ap.add_argument("--no-resume", action="store_true", help="start afresh even if OUT/last.ckpt exists")
    ap.add_argument("--eval", action="store_true", help="evaluate the test fold when training ends")
    ap.add_argument("overrides", nargs="*", help="section.key=value, e.g. data.fold=2 model.variant=ofe")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        cfg = load_config(args.config, args.overrides)
        res = train(cfg, resume=not args.no_resume)
        if args.eval and res["test_subjects"] and int(os.environ.get("RANK", "0")) == 0:
            from .evaluate import evaluate_checkpoint, format_table

            report = evaluate_checkpoint(Path(res["checkpoint"]), cfg.data.cache, res["test_subjects"], store=True)
            print(format_table(report))
    except RTATLError as exc:
        print(f"rtatl-train: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in res.items() if k != "history"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
