package model

import (
	"math"
	"os"
	"testing"
	"time"

	"github.com/gradlab/gradlab/data"
	"github.com/gradlab/gradlab/solvers"
	"github.com/gradlab/gradlab/solvers/schedule"
)

func TestMain(m *testing.M) {
	restore := UseFastGemm()
	code := m.Run()
	restore()
	os.Exit(code)
}

// TestTrainGoSource trains the 2-layer d = 128 byte-level decoder (MHA + SwiGLU, float32, context 64,
// batch 16) with AdamW (peak lr 3e-3, 15 warm-up steps, cosine to 3e-4 over at most 300 steps) on 3 MB of
// the Go standard library's source and checks that the validation loss (8 batches spread over the
// validation split) falls below 0.8× the corpus's unigram cross-entropy. Training evaluates every 25 steps
// and stops once the loss is below 0.75× unigram (about 80–100 steps), or after 35 s of training (evaluation excluded) on a
// machine too loaded to get there, so that the test stays under a minute.
func TestTrainGoSource(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model for about half a minute")
	}
	start := time.Now()
	corpus, err := data.LoadGoSource("", data.WithMaxBytes(3<<20))
	if err != nil {
		t.Skipf("Go source not available: %v", err)
	}
	unigram, err := data.UnigramCrossEntropy(corpus.Train.Text, corpus.Valid.Text, data.ByteVocabSize, 1)
	if err != nil {
		t.Fatal(err)
	}
	const B, T, steps = 16, 64, 300
	m, err := New(Config{Dim: 128, Layers: 2, Heads: 4, Context: T, Seed: 1}, B)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	sampler, err := data.NewSampler(corpus.Train.Text, B, T, 1)
	if err != nil {
		t.Fatal(err)
	}
	valid, err := EvalBatches(corpus.Valid.Text, B, T, 8)
	if err != nil {
		t.Fatal(err)
	}
	const peak, warm = 3e-3, 15
	sched := schedule.Must(schedule.WarmupThen(warm, peak, schedule.Must(schedule.Cosine(peak, peak/10, steps-warm))))
	opt, err := solvers.NewAdamW(solvers.WithLR(peak), solvers.WithWeightDecay(0.01))
	if err != nil {
		t.Fatal(err)
	}
	h, err := Train(m, opt, sampler, TrainConfig{Steps: steps, EvalEvery: 25, Valid: valid, Schedule: sched,
		Stop: func(r Record) bool { return r.ValidLoss < 0.75*unigram || r.Elapsed > 35*time.Second },
		LogFunc: func(r Record) {
			t.Logf("step %3d  lr %.2e  train %.3f  valid %.3f  |g| %.2f  %.0f tok/s", r.Step, r.LR, r.TrainLoss, r.ValidLoss, r.GradNorm, r.TokensPerSec)
		}})
	if err != nil {
		t.Fatal(err)
	}
	final := h.FinalValidLoss()
	t.Logf("corpus: %v", corpus.Info)
	t.Logf("unigram cross-entropy %.3f nats/byte; validation %.3f → %.3f (%.2f× unigram) after %d steps; %.0f tokens/s; test took %v",
		unigram, h.Evals[0].ValidLoss, final, final/unigram, len(h.Records), h.TokensPerSec, time.Since(start).Round(time.Millisecond))
	if !(final < 0.8*unigram) || math.IsNaN(final) {
		t.Errorf("validation loss %.3f is not below 0.8 × unigram %.3f", final, unigram)
	}
}
