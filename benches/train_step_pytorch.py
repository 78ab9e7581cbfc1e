"""The failure predictor's training step in PyTorch, for comparison with
`cargo bench --bench predictor -- train_step` on the same machine.

The network is the seed's (and `src/train/model.rs`'s): LSTM(8 -> 128,
every step) -> dropout 0.2 -> LSTM(128 -> 64, every step) -> dropout 0.2 ->
LSTM(64 -> 32, last step) -> dense 16 ReLU -> dense 4, cross-entropy, Adam
at 1e-3, batch 32 of 60 x 8 windows, on the CPU with one thread. A step is
forward, backward and the optimiser's update, as in the Rust benchmark.

    pip install torch
    python3 benches/train_step_pytorch.py
"""

import statistics
import time

import torch
from torch import nn

torch.set_num_threads(1)
torch.manual_seed(1)

BATCH, WINDOW, FEATURES = 32, 60, 8


class PredictorNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm1 = nn.LSTM(FEATURES, 128, batch_first=True)
        self.lstm2 = nn.LSTM(128, 64, batch_first=True)
        self.lstm3 = nn.LSTM(64, 32, batch_first=True)
        self.drop = nn.Dropout(0.2)
        self.dense = nn.Linear(32, 16)
        self.out = nn.Linear(16, 4)

    def forward(self, x):
        x, _ = self.lstm1(x)
        x, _ = self.lstm2(self.drop(x))
        x, _ = self.lstm3(self.drop(x))
        return self.out(torch.relu(self.dense(x[:, -1, :])))


def main():
    net = PredictorNet()
    optim = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.randn(BATCH, WINDOW, FEATURES)
    y = torch.arange(BATCH) % 4

    def step():
        optim.zero_grad()
        loss_fn(net(x), y).backward()
        optim.step()

    for _ in range(20):
        step()
    samples = []
    for _ in range(10):
        n = 20
        start = time.perf_counter()
        for _ in range(n):
            step()
        samples.append((time.perf_counter() - start) / n * 1e3)
    print(
        f"torch {torch.__version__}, 1 thread: train step batch 32 "
        f"median {statistics.median(samples):.2f} ms "
        f"(min {min(samples):.2f}, max {max(samples):.2f}, 10 samples of 20 steps)"
    )


if __name__ == "__main__":
    main()
