package model_test

import (
	"bytes"
	"fmt"

	"github.com/gradlab/gradlab/data"
	"github.com/gradlab/gradlab/model"
	"github.com/gradlab/gradlab/solvers"
	"github.com/gradlab/gradlab/solvers/schedule"
)

// A tiny byte-level decoder trained with AdamW (warm-up then cosine) on a repetitive text, evaluated on
// held-out windows, then asked to continue a prompt greedily with its KV caches.
func Example() {
	defer model.UseFastGemm()() // faster weight gradients in Gorgonia (process-wide)

	text := bytes.Repeat([]byte("func add(a, b int) int { return a + b }\n"), 200)
	corpus, err := data.FromDocuments([]data.Document{{Name: "train.go", Text: text}, {Name: "valid.go", Text: text[:2000]}},
		data.WithValidFraction(0))
	if err != nil {
		panic(err)
	}
	const B, T = 8, 32
	cfg := model.Config{Dim: 32, Layers: 2, Heads: 2, Context: T, Seed: 1}
	m, err := model.New(cfg, B)
	if err != nil {
		panic(err)
	}
	defer m.Close()
	total, _ := m.ParamCount()
	fmt.Println("parameters:", total, "first:", m.Params()[0].Name(), "last:", m.Params()[len(m.Params())-1].Name())

	sampler, _ := data.NewSampler(corpus.Train.Text, B, T, 1)
	valid, _ := model.EvalBatches(text[:2000], B, T, 4)
	sched := schedule.Must(schedule.WarmupThen(10, 1e-2, schedule.Must(schedule.Cosine(1e-2, 1e-3, 50))))
	opt, _ := solvers.NewAdamW(solvers.WithLR(1e-2))
	h, err := model.Train(m, opt, sampler, model.TrainConfig{Steps: 60, EvalEvery: 30, Valid: valid, Schedule: sched})
	if err != nil {
		panic(err)
	}
	fmt.Printf("validation loss fell below 0.5 nats/byte: %v (from %.1f)\n", h.FinalValidLoss() < 0.5, h.Evals[0].ValidLoss)

	prompt := data.ByteTokenizer{}.Encode(nil, []byte("func add(a, b int) "))
	g, err := m.Generate(prompt, 20, model.SampleConfig{}) // greedy
	if err != nil {
		panic(err)
	}
	out, _ := data.ByteTokenizer{}.Decode(nil, g.Tokens)
	fmt.Printf("%q\n", out)
	// Output:
	// parameters: 49312 first: embed.weight last: head.weight
	// validation loss fell below 0.5 nats/byte: true (from 5.7)
	// "int { return a + b }"
}
