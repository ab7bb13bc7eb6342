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

from rtatl_sdk.au import AU_SETS
from rtatl_sdk.errors import RTATLError, TrainingError

from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig, load_config

log = logging.getLogger("rtatl.train")


class BatchStream:
    """Deterministic batches: epoch e uses permutation(seed, e), sharded by rank; step -> batch."""

    def __init__(self, dataset, batch_size: int, seed: int, rank: int = 0, world: int = 1, workers: int = 0):
        self.ds, self.bs, self.seed, self.rank, self.world, self.workers = dataset, batch_size, seed, rank, world, workers
        per_rank = len(dataset) // world
        self.per_epoch = per_rank // batch_size
        if self.per_epoch == 0:
            raise TrainingError(f"{len(dataset)} samples are fewer than one batch of {batch_size} per process ({world} processes)")
        self._iter = None
        self._at = None

    def _batches(self, epoch: int) -> list[list[int]]:
        perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.ds))
        mine = perm[self.rank::self.world][: self.per_epoch * self.bs]
        return [mine[i * self.bs:(i + 1) * self.bs].tolist() for i in range(self.per_epoch)]

    def get(self, step: int) -> dict:
        """The batch of global step ``step`` (sequential access is fast; any step works)."""
        from torch.utils.data import DataLoader

        from .data.dataset import collate

        if self._at != step or self._iter is None:
            epoch, offset = divmod(step, self.per_epoch)
            self.ds.set_epoch(epoch)
            loader = DataLoader(self.ds, batch_sampler=self._batches(epoch)[offset:], collate_fn=collate,
                                num_workers=self.workers)
            self._iter, self._at = iter(loader), step
        try:
            batch = next(self._iter)
        except StopIteration:
            self._iter = None
            return self.get(step)
        self._at = step + 1
        if self._at % self.per_epoch == 0:
            self._iter = None  # next epoch, new permutation
        return batch


def _merge(a: dict, b: dict | None) -> dict:
    import torch

    if b is None:
        return a
    return {k: torch.cat([a[k], b[k]]) for k in a}


def _device(spec: str, local_rank: int):
    import torch

    if spec == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    dev = torch.device(spec)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"run.device={spec}: CUDA is not available on this machine")
    return dev


def train(cfg: TrainConfig, resume: bool = True, progress: bool = True) -> dict:
    import torch
    import torch.distributed as dist

    from .data.dataset import AUDataset, Augment, all_subjects
    from .data.splits import check_present
    from .model import count_parameters

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _device(cfg.run.device, local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    out = Path(cfg.run.out)
    out.mkdir(parents=True, exist_ok=True)
    aus = tuple(cfg.data.aus or AU_SETS[cfg.data.dataset])

    train_subj = test_subj = None
    if cfg.data.fold is not None:
        train_subj, test_subj = check_present(cfg.data.dataset, cfg.data.fold, all_subjects(cfg.data.cache), cfg.data.strict_subjects)
    d = cfg.data
    augment = Augment(colour_jitter=d.colour_jitter, greyscale=d.greyscale, blur=d.blur, jpeg=d.jpeg, scale=d.scale)
    lab = AUDataset(d.cache, train_subj, train=True, labelled=True, seed=cfg.run.seed, aus=aus, augment=augment)
    streams = [BatchStream(lab, cfg.optim.batch_size, cfg.run.seed, rank, world, cfg.run.workers)]
    if cfg.data.unlabelled_cache is not None and cfg.model.variant != "backbone":
        unl = AUDataset(cfg.data.unlabelled_cache, None, train=True, labelled=False, seed=cfg.run.seed + 1, aus=None,
                        augment=augment)
        unl.aus, unl.cols = aus, list(range(len(aus)))  # labels unknown; centres for the labelled AU set
        streams.append(BatchStream(unl, cfg.optim.unlabelled_batch_size, cfg.run.seed + 1, rank, world, cfg.run.workers))

    torch.manual_seed(cfg.run.seed)
    from .rtatl import RTATL

    model = RTATL.from_config(cfg, aus).to(device)
    if cfg.optim.balance_labels:
        known = lab.index.labels[:, lab.cols]
        pos, neg = (known == 1).sum(0), (known == 0).sum(0)
        model.pos_weight = torch.tensor(np.clip(neg / np.maximum(pos, 1), 0.1, 10.0), dtype=torch.float32, device=device)
        log.info("L_Sup positive weights per AU: %s", np.round(model.pos_weight.cpu().numpy(), 2).tolist())
    if rank == 0:
        n_inf, n_all = count_parameters(model.backbone), count_parameters(model)
        log.info("RTATL variant=%s AUs=%s: inference parameters %.2f M, training graph %.2f M",
                 cfg.model.variant, list(aus), n_inf / 1e6, n_all / 1e6)
    opt_g = torch.optim.Adam(model.generator_parameters(), lr=cfg.optim.lr)
    opt_d = torch.optim.Adam(model.discriminator_parameters(), lr=cfg.optim.lr) if model.use_roii else None
    amp = cfg.run.amp and device.type == "cuda"
    scaler_g = torch.amp.GradScaler("cuda", enabled=amp)
    scaler_d = torch.amp.GradScaler("cuda", enabled=amp)

    step, skipped = 0, 0
    ckpt_path = out / "last.ckpt"
    if resume and ckpt_path.is_file():
        state = load_checkpoint(ckpt_path)
        model.load_state_dict(state["model"])
        opt_g.load_state_dict(state["opt_g"])
        if opt_d is not None:
            opt_d.load_state_dict(state["opt_d"])
        scaler_g.load_state_dict(state["scaler_g"])
        scaler_d.load_state_dict(state["scaler_d"])
        step, skipped = state["step"], state.get("skipped_steps", 0)
        log.info("resumed from %s at step %d", ckpt_path, step)

    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)
    writer = None
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"))
    from tqdm import tqdm

    bar = tqdm(total=cfg.optim.steps, initial=step, desc="rtatl-train", disable=not progress or rank != 0)
    log_file = open(out / "log.jsonl", "a") if rank == 0 else None
    model.train()
    t0, start_step = time.time(), step
    history = []
    while step < cfg.optim.steps:
        batch = streams[0].get(step)
        if len(streams) > 1:
            batch = _merge(batch, streams[1].get(step))
        # seeded after the data (a new DataLoader draws from the global RNG): dropout and the
        # cropped AU are functions of the step alone, so a resumed run repeats them exactly
        torch.manual_seed(cfg.run.seed * 1_000_003 + step)
        gen = torch.Generator().manual_seed(cfg.run.seed * 7_919 + step)
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with torch.autocast(device.type, enabled=amp):
            g = net(batch, mode="g", gen=gen)
        terms = {k: float(v.detach()) for k, v in g.terms.items()}
        if not math.isfinite(float(g.total.detach())):
            if cfg.run.nonfinite == "stop":
                raise TrainingError(f"step {step}: non-finite loss {terms}; stopped before updating the weights "
                                 f"(set run.nonfinite=skip to skip such steps); last checkpoint: {ckpt_path}")
            skipped += 1
            log.warning("step %d: non-finite loss %s; step skipped (%d so far)", step, terms, skipped)
            opt_g.zero_grad(set_to_none=True)
            step += 1
            continue
        opt_g.zero_grad(set_to_none=True)
        scaler_g.scale(g.total).backward()
        if cfg.optim.grad_clip:
            scaler_g.unscale_(opt_g)
            torch.nn.utils.clip_grad_norm_(model.generator_parameters(), cfg.optim.grad_clip)
        scaler_g.step(opt_g)
        scaler_g.update()
        if opt_d is not None:
            opt_d.zero_grad(set_to_none=True)  # drop what the G step left on D and C
            with torch.autocast(device.type, enabled=amp):
                d = net(g, mode="d")
            if math.isfinite(float(d.total.detach())):
                scaler_d.scale(d.total).backward()
                scaler_d.step(opt_d)
                scaler_d.update()
                terms.update({k: float(v.detach()) for k, v in d.terms.items()})
            else:
                skipped += 1
                log.warning("step %d: non-finite discriminator loss; D step skipped", step)
        step += 1
        history.append(terms)
        bar.update(1)
        if rank == 0:
            if step % cfg.run.log_every == 0 or step == cfg.optim.steps:
                ips = (step - start_step) * len(batch["image"]) * world / max(1e-9, time.time() - t0)
                bar.set_postfix(sup=f"{terms['sup']:.3f}", img_s=f"{ips:.1f}")
                for k, v in terms.items():
                    writer.add_scalar(f"loss/{k}", v, step)
                writer.add_scalar("speed/images_per_second", ips, step)
                log_file.write(json.dumps({"step": step, **terms, "images_per_second": round(ips, 2)}) + "\n")
                log_file.flush()
            if step % cfg.run.ckpt_every == 0 or step == cfg.optim.steps:
                save_checkpoint(ckpt_path, {
                    "model": model.state_dict(), "opt_g": opt_g.state_dict(),
                    "opt_d": opt_d.state_dict() if opt_d is not None else None,
                    "scaler_g": scaler_g.state_dict(), "scaler_d": scaler_d.state_dict(),
                    "step": step, "skipped_steps": skipped, "config": json.loads(cfg.model_dump_json()),
                    "aus": list(aus), "test_subjects": test_subj,
                })
    bar.close()
    if log_file:
        log_file.close()
    if writer:
        writer.close()
    result = {"steps": step, "skipped_steps": skipped, "checkpoint": str(ckpt_path), "history": history,
              "test_subjects": test_subj}
    if world > 1:
        dist.barrier()
    return result


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
