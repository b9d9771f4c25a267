"""Training throughput of the reproducibility LM per MLP activation (tokens/second).

Same model, data and batches for each activation; only the activation differs.
Run on this machine's CPU now, and on a GPU later to compare:

    python benchmarks/lm_throughput.py                 # CPU, 1 thread (as a 1-CPU trial)
    python benchmarks/lm_throughput.py --device cuda --n-embd 256 --n-layer 4

Each activation is timed --repeats times, interleaved; the median is reported
with the ratio to ReLU.
"""

from __future__ import annotations

import statistics
import time

import torch
from common import script_parser

from experiments.lm.data import batches, load_corpus
from experiments.lm.model import CharLM, ModelConfig

ACTIVATIONS = [("relu", 1.0), ("gelu", 1.0), ("swish", 1.0), ("smelu", 0.5), ("smelu", 1.0)]


def tokens_per_second(
    cfg: ModelConfig, data: torch.Tensor, steps: int, batch: int, device: str
) -> float:
    torch.manual_seed(0)
    model = CharLM(cfg).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    train = batches(data.to(device), cfg.block_size, batch, steps + 3, generator)
    for step, (x, y) in enumerate(train):  # 3 warm-up steps
        if step == 3:
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        loss = model.loss(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return steps * batch * cfg.block_size / (time.perf_counter() - start)


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--n-layer", type=int, default=2)
    parser.add_argument("--n-embd", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    corpus = load_corpus()
    rates: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for name, beta in ACTIVATIONS:
            cfg = ModelConfig(corpus.vocab_size, 64, args.n_layer, 2, args.n_embd, name, beta)
            label = f"{name}(beta={beta})" if name == "smelu" else name
            rates.setdefault(label, []).append(
                tokens_per_second(cfg, corpus.train, args.steps, args.batch, args.device)
            )
    print(
        f"device {args.device}, {args.threads} thread(s), n_layer {args.n_layer}, "
        f"n_embd {args.n_embd}, batch {args.batch} x 64 tokens, median of {args.repeats}"
    )
    base = statistics.median(rates["relu"])
    print(f"{'activation':<18} {'tokens/s':>10} {'vs relu':>8}")
    for label, values in rates.items():
        rate = statistics.median(values)
        print(f"{label:<18} {rate:>10,.0f} {rate / base:>7.2f}x")


if __name__ == "__main__":
    main()
