package model

import (
	"math"
	"math/rand"
	"testing"

	"gorgonia.org/tensor"

	"github.com/gradlab/gradlab/moe"
)

// tiny returns small float64 configurations of every kind the package builds.
func tiny() map[string]Config {
	base := Config{Vocab: 32, Dim: 16, Layers: 2, Heads: 2, Context: 6, Dtype: tensor.Float64, Seed: 3}
	mla := MLADims{QRank: 8, KVRank: 8, RoPEDim: 4}
	moeCfg := moe.Config{Hidden: 12, Experts: 4, TopK: 2, Shared: 1, AuxAlpha: 0.01, ZBeta: 1e-3}
	cfgs := map[string]Config{}
	c := base
	cfgs["MHA+SwiGLU"] = c
	c = base
	c.Attention, c.KVHeads, c.Heads, c.TieEmbeddings = GQA, 2, 4, true
	c.HeadDim = 4
	cfgs["GQA+SwiGLU tied"] = c
	c = base
	c.Attention, c.MLA = MLA, mla
	cfgs["MLA+SwiGLU"] = c
	c = base
	c.FFN, c.MoE = MoE, moeCfg
	cfgs["MHA+MoE"] = c
	c = base
	c.Attention, c.MLA, c.FFN, c.MoE = MLA, MLADims{KVRank: 8, RoPEDim: 4}, MoE, moeCfg
	c.MoE.Router, c.MoE.RouteScale, c.MoE.Groups, c.MoE.TopKGroups = moe.Sigmoid, 2.5, 2, 1
	cfgs["MLA+MoE sigmoid grouped"] = c
	return cfgs
}

func randBatch(rng *rand.Rand, n, vocab int) (in, tg []int) {
	in, tg = make([]int, n), make([]int, n)
	for i := range in {
		in[i], tg[i] = rng.Intn(vocab), rng.Intn(vocab)
	}
	return
}

// TestGradCheck compares the gradient of the whole model's cost (cross-entropy plus MoE auxiliary losses)
// with central differences of the forward-only program, on a sample of the entries of every parameter.
func TestGradCheck(t *testing.T) {
	for name, cfg := range tiny() {
		t.Run(name, func(t *testing.T) {
			const B = 2
			m, err := New(cfg, B)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			rng := rand.New(rand.NewSource(5))
			in, tg := randBatch(rng, m.Tokens(), cfg.Vocab)
			if err := m.SetBatch(in, tg); err != nil {
				t.Fatal(err)
			}
			if _, err := m.Grad(); err != nil {
				t.Fatal(err)
			}
			const eps = 1e-5
			worst, checked := 0.0, 0
			for _, p := range m.Params() {
				gv, err := p.Grad()
				if err != nil {
					t.Fatal(err)
				}
				grad := append([]float64(nil), gv.Data().([]float64)...)
				w := p.Value().Data().([]float64)
				for s := 0; s < 5; s++ {
					i := rng.Intn(len(w))
					old := w[i]
					w[i] = old + eps
					lp, err := m.Loss(in, tg)
					if err != nil {
						t.Fatal(err)
					}
					w[i] = old - eps
					lm, err := m.Loss(in, tg)
					if err != nil {
						t.Fatal(err)
					}
					w[i] = old
					fd := (lp - lm) / (2 * eps)
					rel := math.Abs(fd-grad[i]) / math.Max(1e-6, math.Abs(fd)+math.Abs(grad[i]))
					if rel > worst {
						worst = rel
					}
					if rel > 1e-5 {
						t.Errorf("%s[%d]: analytic %.10g, finite differences %.10g (rel %.2g)", p.Name(), i, grad[i], fd, rel)
					}
					checked++
				}
			}
			t.Logf("%d entries of %d parameters checked, worst relative difference %.2g", checked, len(m.Params()), worst)
		})
	}
}

// TestCachedDecodingEqualsFullForward feeds every sequence of a batch token by token through the KV-cached
// Decoder and compares its logits with the graph's full forward pass (float64).
func TestCachedDecodingEqualsFullForward(t *testing.T) {
	for name, cfg := range tiny() {
		t.Run(name, func(t *testing.T) {
			const B = 2
			m, err := New(cfg, B)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			rng := rand.New(rand.NewSource(7))
			in, tg := randBatch(rng, m.Tokens(), cfg.Vocab)
			// With MoE, move the balancing biases away from zero so that the decoder's routing must use them.
			for _, l := range m.MoELayers() {
				if err := l.SetBiasGamma(0.05); err != nil {
					t.Fatal(err)
				}
			}
			if err := m.SetBatch(in, tg); err != nil {
				t.Fatal(err)
			}
			if _, err := m.Grad(); err != nil {
				t.Fatal(err)
			}
			if err := m.UpdateBias(); err != nil {
				t.Fatal(err)
			}
			for _, l := range m.MoELayers() {
				nz := 0
				for _, b := range l.BiasValues() {
					if b != 0 {
						nz++
					}
				}
				if nz == 0 {
					t.Fatal("the balancing bias stayed zero")
				}
			}
			full, err := m.Logits(in)
			if err != nil {
				t.Fatal(err)
			}
			dec, err := NewDecoder[float64](m)
			if err != nil {
				t.Fatal(err)
			}
			T, V := cfg.Context, cfg.Vocab
			worst := 0.0
			for b := 0; b < B; b++ {
				dec.Reset()
				for s := 0; s < T; s++ {
					lg, err := dec.Step(in[b*T+s])
					if err != nil {
						t.Fatal(err)
					}
					for v := range lg {
						worst = math.Max(worst, math.Abs(lg[v]-full[(b*T+s)*V+v]))
					}
				}
			}
			t.Logf("max |cached − full| = %.3g over %d logits; cache %d bytes", worst, B*T*V, dec.CacheBytes())
			if worst > 1e-9 {
				t.Errorf("cached decoding differs from the full forward pass by %.3g", worst)
			}
		})
	}
}

func TestParamNamesAndCounts(t *testing.T) {
	cfgs := tiny()
	m, err := New(cfgs["MHA+MoE"], 1)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, want := range []string{"embed.weight", "blocks.0.attn_norm.weight", "blocks.0.attn.wq.weight",
		"blocks.1.ffn_norm.weight", "blocks.1.ffn.gate.weight", "blocks.1.ffn.experts.w2.weight",
		"blocks.1.ffn.shared_experts.w1.weight", "norm.weight", "head.weight"} {
		if m.Param(want) == nil {
			t.Errorf("no parameter %q", want)
		}
	}
	total, active := m.ParamCount()
	// 4 experts of 3·16·12 = 576 parameters each, top-2: 2 experts per layer inactive.
	if total-active != 2*2*576 {
		t.Errorf("total %d − active %d = %d, want %d", total, active, total-active, 2*2*576)
	}
	tied, err := New(cfgs["GQA+SwiGLU tied"], 1)
	if err != nil {
		t.Fatal(err)
	}
	defer tied.Close()
	if tied.Param("head.weight") != nil || tied.Head != nil {
		t.Error("a tied model has a head")
	}
}

func TestGenerate(t *testing.T) {
	cfg := tiny()["MLA+MoE sigmoid grouped"]
	m, err := New(cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	prompt := []int{1, 2, 3}
	g1, err := m.Generate(prompt, 10, SampleConfig{})
	if err != nil {
		t.Fatal(err)
	}
	// Greedy generation: each token is the argmax of the full forward pass over the sequence so far.
	dec, _ := NewDecoder[float64](m)
	seq := append([]int(nil), prompt...)
	for i, tok := range g1.Tokens {
		dec.Reset()
		var lg []float64
		for _, s := range seq {
			lg, _ = dec.Step(s)
		}
		best := 0
		for v := range lg {
			if lg[v] > lg[best] {
				best = v
			}
		}
		if best != tok {
			t.Fatalf("greedy token %d = %d, argmax %d", i, tok, best)
		}
		seq = append(seq, tok)
	}
	a, _ := m.Generate(prompt, 20, SampleConfig{Temperature: 1, Seed: 9})
	b, _ := m.Generate(prompt, 20, SampleConfig{Temperature: 1, Seed: 9})
	c, _ := m.Generate(prompt, 20, SampleConfig{Temperature: 1, TopK: 3, Seed: 10})
	for i := range a.Tokens {
		if a.Tokens[i] != b.Tokens[i] {
			t.Fatal("sampling with one seed is not reproducible")
		}
	}
	if len(c.Tokens) != 20 {
		t.Fatalf("got %d tokens", len(c.Tokens))
	}
	if _, err := m.Generate(prompt, m.Config().MaxPos, SampleConfig{}); err == nil {
		t.Error("generation past MaxPos accepted")
	}
}
