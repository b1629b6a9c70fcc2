package solvers

import (
	"bytes"
	"fmt"
	"math"
	"math/rand"
	"strings"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/gradlab/gradlab/solvers/schedule"
)

// muonLSQ is the matrix least-squares problem f(W) = ‖A·W − B‖²_F/(2N) with A (N×in) Gaussian/√N,
// W (in×out, gradlab's layout) and B = A·W* for a Gaussian W*/√in: the minimum is W*, f = 0.
type muonLSQ struct {
	n, in, out  int
	a, b, wstar []float64
}

func newMuonLSQ(seed int64, n, in, out int) *muonLSQ {
	rng := rand.New(rand.NewSource(seed))
	p := &muonLSQ{n: n, in: in, out: out, a: gaussian(rng, n*in), wstar: gaussian(rng, in*out)}
	for i := range p.a {
		p.a[i] /= math.Sqrt(float64(n))
	}
	for i := range p.wstar {
		p.wstar[i] /= math.Sqrt(float64(in))
	}
	p.b = p.residual(p.wstar, make([]float64, n*out)) // A·W* − 0
	return p
}

// residual returns A·W − B (with B = 0 before it is set).
func (p *muonLSQ) residual(w, r []float64) []float64 {
	for i := 0; i < p.n; i++ {
		for j := 0; j < p.out; j++ {
			s := 0.0
			for k := 0; k < p.in; k++ {
				s += p.a[i*p.in+k] * w[k*p.out+j]
			}
			if p.b != nil {
				s -= p.b[i*p.out+j]
			}
			r[i*p.out+j] = s
		}
	}
	return r
}

// lossGrad returns f(W) and writes ∇f = Aᵀ(A·W − B)/N into g.
func (p *muonLSQ) lossGrad(w, g []float64) float64 {
	r := p.residual(w, make([]float64, p.n*p.out))
	f := 0.0
	for _, v := range r {
		f += v * v
	}
	for k := 0; k < p.in; k++ {
		for j := 0; j < p.out; j++ {
			s := 0.0
			for i := 0; i < p.n; i++ {
				s += p.a[i*p.in+k] * r[i*p.out+j]
			}
			g[k*p.out+j] = s / float64(p.n)
		}
	}
	return f / (2 * float64(p.n))
}

// TestMuonConvergesLeastSquares: both variants, float32 and float64, wide and tall W, from W = 0, with a
// cosine-annealed lr, reach 1e-4 of the initial loss and W within 2% of W*.
func TestMuonConvergesLeastSquares(t *testing.T) {
	const steps = 400
	for _, c := range []struct {
		kind string
		lr   float64
	}{{"muon", 0.05}, {"muon_moonlight", 0.02}} {
		for _, sh := range [][2]int{{12, 24}, {24, 12}} {
			for _, dtype := range []string{"float32", "float64"} {
				t.Run(fmt.Sprintf("%s/%dx%d/%s", c.kind, sh[0], sh[1], dtype), func(t *testing.T) {
					p := newMuonLSQ(11, 64, sh[0], sh[1])
					s, err := New(c.kind, WithSchedule(schedule.Must(schedule.Cosine(c.lr, 0, steps))), WithWeightDecay(0))
					if err != nil {
						t.Fatal(err)
					}
					w0 := make([]float64, sh[0]*sh[1])
					var par *Param
					if dtype == "float32" {
						par = NewParamFrom("w", sh[:], toF32(w0))
					} else {
						par = NewParamFrom("w", sh[:], w0)
					}
					g := make([]float64, len(w0))
					f0 := p.lossGrad(values(par), g)
					for k := 0; k < steps; k++ {
						p.lossGrad(values(par), g)
						setGrad(par, g)
						if err := s.Step(Params(par)); err != nil {
							t.Fatal(err)
						}
					}
					w := values(par)
					f := p.lossGrad(w, g)
					dist, norm := 0.0, 0.0
					for i := range w {
						dist += (w[i] - p.wstar[i]) * (w[i] - p.wstar[i])
						norm += p.wstar[i] * p.wstar[i]
					}
					rel := math.Sqrt(dist / norm)
					t.Logf("loss %.3g -> %.3g, ||W-W*||/||W*|| = %.2g", f0, f, rel)
					if f > 1e-4*f0 || rel > 2e-2 {
						t.Fatalf("did not converge: loss %.3g (from %.3g), relative distance %.3g", f, f0, rel)
					}
				})
			}
		}
	}
}

// muonModel is a set of named matrices in one dtype with a seeded gradient stream.
func muonModel(dtype string, seed int64, shapes ...[2]int) *testModel {
	rng := rand.New(rand.NewSource(seed))
	m := &testModel{rng: rand.New(rand.NewSource(seed + 1))}
	for i, sh := range shapes {
		init := gaussian(rng, sh[0]*sh[1])
		name := fmt.Sprintf("w%d", i)
		if dtype == "float32" {
			m.ps = append(m.ps, NewParamFrom(name, sh[:], toF32(init)))
		} else {
			m.ps = append(m.ps, NewParamFrom(name, sh[:], init))
		}
	}
	return m
}

// TestMuonStateRoundTrip: N steps, save, load into a fresh solver, M steps equals N+M steps bit for bit,
// for both variants alone and for the Muon+AdamW combination on a model with vectors and a 3-D tensor.
func TestMuonStateRoundTrip(t *testing.T) {
	builds := map[string]func() (Solver, error){
		"muon": func() (Solver, error) {
			return New("muon", WithWeightDecay(0.1), WithNesterov(false), Set("ns_steps", 3))
		},
		"muon_moonlight": func() (Solver, error) { return New("muon_moonlight") },
		"muon+adamw": func() (Solver, error) {
			return NewMuonWithAdamW(MuonAdamWConfig{Muon: []Option{WithWeightDecay(0.01)}, AdamW: []Option{WithAMSGrad(true)}})
		},
		"moonlight+adamw": func() (Solver, error) { return NewMuonWithAdamW(MuonAdamWConfig{Moonlight: true}) },
	}
	for name, build := range builds {
		for _, dtype := range []string{"float32", "float64"} {
			t.Run(name+"/"+dtype, func(t *testing.T) {
				model := func() *testModel {
					if strings.Contains(name, "adamw") {
						return newTestModel(dtype, 1) // w1 4x3 (muon), b1 3 and w2 2x3x2 (adamw)
					}
					return muonModel(dtype, 1, [2]int{4, 3}, [2]int{3, 7}, [2]int{5, 5})
				}
				r := roundTrip(t, build, dtype, 4, 3, model, nil)
				// a state of the other variant is refused
				other := "muon_moonlight"
				if name == "muon_moonlight" {
					other = "muon"
				}
				if !strings.Contains(name, "adamw") {
					o, _ := New(other)
					if err := LoadState(bytes.NewReader(stateBytesOf(t, r.saved)), o); err == nil {
						t.Fatalf("%s loaded a %s state", other, name)
					}
				}
			})
		}
	}
}

func TestMuonBadHyperparameters(t *testing.T) {
	for _, kind := range []string{"muon", "muon_moonlight"} {
		for name, opt := range map[string]Option{
			"lr < 0":              WithLR(-1),
			"momentum 1":          WithMomentum(1),
			"momentum < 0":        WithMomentum(-0.1),
			"weight_decay < 0":    WithWeightDecay(-1),
			"ns_steps 0":          Set("ns_steps", 0),
			"ns_steps 2.5":        Set("ns_steps", 2.5),
			"nesterov 2":          Set("nesterov", 2),
			"channel_first 0.5":   Set("channel_first", 0.5),
			"eps (not a key)":     WithEps(1e-8),
			"beta1 (not a key)":   Set("beta1", 0.9),
			"lr NaN":              WithLR(math.NaN()),
			"momentum +Inf":       WithMomentum(math.Inf(1)),
			"amsgrad (not a key)": WithAMSGrad(true),
		} {
			if _, err := New(kind, opt); err == nil {
				t.Errorf("%s with %s: no error", kind, name)
			}
		}
		s, err := New(kind)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SetLR(-1); err == nil {
			t.Errorf("%s: SetLR(-1) accepted", kind)
		}
		m := s.(*Muon)
		if err := m.SetNSCoefs(NSCoefs{A: math.NaN()}); err == nil {
			t.Errorf("%s: NaN Newton-Schulz coefficient accepted", kind)
		}
	}
	// reference defaults
	for kind, want := range map[string]map[string]float64{
		"muon":           {"lr": 0.02, "momentum": 0.95, "nesterov": 1, "weight_decay": 0, "ns_steps": 5, "channel_first": 0},
		"muon_moonlight": {"lr": 1e-3, "momentum": 0.95, "nesterov": 1, "weight_decay": 0.1, "ns_steps": 5, "channel_first": 0},
	} {
		s, _ := New(kind)
		for k, v := range want {
			if got, ok := s.(*Muon).Hyper(k); !ok || got != v {
				t.Errorf("%s default %s = %v, want %v", kind, k, got, v)
			}
		}
	}
}

// TestMuonRefusesNonMatrices: a step with a vector or a 3-D tensor among its parameters is refused with an
// error naming it, and changes no weight, gradient or state.
func TestMuonRefusesNonMatrices(t *testing.T) {
	for _, kind := range []string{"muon", "muon_moonlight"} {
		model := newTestModel("float64", 4) // w1 4x3, b1 3, w2 2x3x2
		s, _ := New(kind)
		if err := s.Step(Params(model.ps[0])); err != nil { // give w1 some state
			t.Fatal(err)
		}
		model.fillGrads()
		before, state := model.snapshot(), stateBytesOf(t, s)
		grads := make([][]float64, len(model.ps))
		for i, p := range model.ps {
			grads[i] = append([]float64(nil), p.GradTensor().Float64s()...)
		}
		for _, bad := range []*Param{model.ps[1], model.ps[2]} {
			err := s.Step(Params(model.ps[0], bad))
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", bad.Name())) {
				t.Fatalf("%s: step with %s %v: error %v, want one naming it", kind, bad.Name(), bad.Tensor().Shape(), err)
			}
			t.Log(err)
		}
		if !sameBits(before, model.snapshot()) || !bytes.Equal(state, stateBytesOf(t, s)) {
			t.Fatalf("%s: a refused step changed weights or state", kind)
		}
		for i, p := range model.ps {
			if !sameBits([][]float64{grads[i]}, [][]float64{p.GradTensor().Float64s()}) {
				t.Fatalf("%s: a refused step changed the gradient of %s", kind, p.Name())
			}
		}
	}
}

// TestMuonChannelFirst: with "channel_first", Muon on Wᵀ (PyTorch's (out, in) layout) follows the
// transpose of Muon on W in gradlab's (in, out) layout, bit for bit (non-square matrices).
func TestMuonChannelFirst(t *testing.T) {
	for _, kind := range []string{"muon", "muon_moonlight"} {
		for _, dtype := range []string{"float32", "float64"} {
			a := muonModel(dtype, 3, [2]int{5, 9}, [2]int{9, 4})
			b := muonModel(dtype, 3, [2]int{9, 5}, [2]int{4, 9})
			transposeInto := func(dst, src *Param) {
				sh := src.Tensor().Shape()
				v, _ := reverseAxes(values(src), sh)
				if dtype == "float32" {
					copy(dst.Tensor().Float32s(), toF32(v))
				} else {
					copy(dst.Tensor().Float64s(), v)
				}
			}
			for i := range a.ps {
				transposeInto(b.ps[i], a.ps[i])
			}
			sa, _ := New(kind, WithWeightDecay(0.05))
			sb, _ := New(kind, WithWeightDecay(0.05), SetFlag("channel_first", true))
			for k := 0; k < 4; k++ {
				a.fillGrads()
				for i, p := range a.ps {
					g := make([]float64, p.Tensor().Shape().TotalSize())
					if dtype == "float32" {
						for j, v := range p.GradTensor().Float32s() {
							g[j] = float64(v)
						}
					} else {
						copy(g, p.GradTensor().Float64s())
					}
					gt, _ := reverseAxes(g, p.Tensor().Shape())
					setGrad(b.ps[i], gt)
				}
				if err := sa.Step(Params(a.ps...)); err != nil {
					t.Fatal(err)
				}
				if err := sb.Step(Params(b.ps...)); err != nil {
					t.Fatal(err)
				}
			}
			for i := range a.ps {
				want, _ := reverseAxes(values(a.ps[i]), a.ps[i].Tensor().Shape())
				if !sameBits([][]float64{want}, [][]float64{values(b.ps[i])}) {
					t.Fatalf("%s %s %s: channel_first on the transpose differs", kind, dtype, a.ps[i].Name())
				}
			}
		}
	}
}

// TestMuonScale checks each variant's shape factor on one step from zero momentum against NewtonSchulz
// directly: Keller's sqrt(max(1, fan_out/fan_in)) with fan_out = cols in gradlab's layout, Moonlight's
// 0.2·sqrt(max(rows, cols)); and that the Moonlight update has an RMS near 0.2 (Liu et al.).
func TestMuonScale(t *testing.T) {
	for _, sh := range [][2]int{{16, 64}, {64, 16}} {
		rows, cols := sh[0], sh[1]
		g := gaussian(rand.New(rand.NewSource(5)), rows*cols)
		for _, kind := range []string{"muon", "muon_moonlight"} {
			// U of the first step (nesterov, zero momentum), as each reference computes it
			u := make([]float64, len(g))
			for i, gi := range g {
				if kind == "muon" {
					m := muonLerp(0, gi, 1-0.95)
					u[i] = muonLerp(gi, m, 0.95)
				} else {
					u[i] = gi + 0.95*gi
				}
			}
			o := make([]float64, len(g))
			if err := NewNewtonSchulz[float64]().Apply(o, u, rows, cols); err != nil {
				t.Fatal(err)
			}
			p := NewParamFrom("w", sh[:], make([]float64, len(g)))
			setGrad(p, g)
			s, _ := New(kind, WithLR(0.01), WithWeightDecay(0))
			if err := s.Step(Params(p)); err != nil {
				t.Fatal(err)
			}
			want := 0.01 * math.Sqrt(math.Max(1, float64(cols)/float64(rows)))
			if kind == "muon_moonlight" {
				want = 0.01 * 0.2 * math.Sqrt(float64(max(rows, cols)))
			}
			w := values(p)
			sum := 0.0
			for i := range w {
				if d := -w[i] / o[i]; math.Abs(d-want) > 1e-9*want {
					t.Fatalf("%s %dx%d: update/NS(G) = %.12g, want %.12g", kind, rows, cols, d, want)
				}
				sum += w[i] * w[i]
			}
			if kind == "muon_moonlight" {
				rms := math.Sqrt(sum/float64(len(w))) / 0.01
				t.Logf("moonlight %dx%d: update RMS/lr = %.3f", rows, cols, rms)
				if rms < 0.15 || rms > 0.25 {
					t.Fatalf("moonlight update RMS/lr = %.3f, want about 0.2", rms)
				}
			}
		}
	}
}

// TestMuonNSCoefs: SetNSCoefs changes the iteration (here to the cubic), and survives a state load.
func TestMuonNSCoefs(t *testing.T) {
	rows, cols := 10, 6 // fan_out ≤ fan_in: Keller's factor is 1
	g := gaussian(rand.New(rand.NewSource(8)), rows*cols)
	want := make([]float64, len(g))
	cub := &NewtonSchulz[float64]{Steps: 5, Coefs: []NSCoefs{NSCubic}, Eps: DefaultNSEps}
	if err := cub.Apply(want, g, rows, cols); err != nil {
		t.Fatal(err)
	}
	s, _ := NewMuon(WithLR(1), WithMomentum(0), WithNesterov(false))
	if err := s.SetNSCoefs(NSCubic); err != nil {
		t.Fatal(err)
	}
	check := func(s *Muon) {
		t.Helper()
		p := NewParamFrom("w", []int{rows, cols}, make([]float64, len(g)))
		setGrad(p, g)
		if err := s.Step(Params(p)); err != nil {
			t.Fatal(err)
		}
		w := values(p)
		for i := range w {
			if math.Abs(-w[i]-want[i]) > 1e-12 {
				t.Fatalf("[%d] update %.15g, cubic NS %.15g", i, -w[i], want[i])
			}
		}
	}
	check(s)
	var buf bytes.Buffer
	if err := SaveState(&buf, s); err != nil {
		t.Fatal(err)
	}
	if err := LoadState(&buf, s); err != nil {
		t.Fatal(err)
	}
	s2, _ := NewMuon(WithLR(1), WithMomentum(0), WithNesterov(false))
	_ = s2.SetNSCoefs(NSCubic)
	check(s2)
	// the loaded solver still uses the cubic (momentum 0: the loaded buffer does not enter the step)
	check(s)
}

func TestMuonNoAllocs(t *testing.T) {
	for _, kind := range []string{"muon", "muon_moonlight"} {
		for _, dtype := range []string{"float32", "float64"} {
			m := muonModel(dtype, 2, [2]int{8, 5}, [2]int{96, 200}, [2]int{200, 96})
			s, _ := New(kind, WithWeightDecay(0.01))
			params := Params(m.ps...)
			m.fillGrads()
			if err := s.Step(params); err != nil {
				t.Fatal(err)
			}
			if n := testing.AllocsPerRun(3, func() {
				if err := s.Step(params); err != nil {
					t.Fatal(err)
				}
			}); n != 0 {
				t.Errorf("%s %s: %v allocations per step", kind, dtype, n)
			}
			wantState := int64(8*5+96*200*2) * 4
			if dtype == "float64" {
				wantState *= 2
			}
			if got := s.StateBytes(); got != wantState {
				t.Errorf("%s %s: StateBytes %d, want %d (one momentum buffer)", kind, dtype, got, wantState)
			}
			if s.(*Muon).WorkspaceBytes() == 0 {
				t.Errorf("%s %s: no workspace reported", kind, dtype)
			}
		}
	}
	g, err := NewMuonWithAdamW(MuonAdamWConfig{})
	if err != nil {
		t.Fatal(err)
	}
	m := newTestModel("float32", 3)
	params := Params(m.ps...)
	m.fillGrads()
	if err := g.Step(params); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(3, func() { _ = g.Step(params) }); n != 0 {
		t.Errorf("muon+adamw: %v allocations per step", n)
	}
}

// TestMuonWithAdamWRouting: the default rule, the name patterns, a custom Match, and groups = separate
// solvers bit for bit.
func TestMuonWithAdamWRouting(t *testing.T) {
	g, err := NewMuonWithAdamW(MuonAdamWConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"layers.0.attn.wq": "muon", "layers.0.mlp.w1": "muon", "blocks.3.ffn.up": "muon",
		"tok_embeddings": "adamw", "model.embed_tokens.weight": "adamw", "transformer.wte": "adamw",
		"lm_head.weight": "adamw", "Output.Weight": "adamw", "head": "adamw",
	} {
		if got := g.Route(name, tensor.Shape{8, 4}); got != want {
			t.Errorf("2-D %q routed to %q, want %q", name, got, want)
		}
	}
	for _, sh := range []tensor.Shape{{8}, {2, 3, 4}, {1, 2, 3, 4}} {
		if got := g.Route("layers.0.attn.wq", sh); got != "adamw" {
			t.Errorf("shape %v routed to %q, want adamw", sh, got)
		}
	}
	// patterns replaced
	g2, _ := NewMuonWithAdamW(MuonAdamWConfig{AdamWNames: []string{"emb"}})
	if got := g2.Route("attn.output.weight", tensor.Shape{4, 4}); got != "muon" {
		t.Errorf("custom patterns: attn.output.weight routed to %q", got)
	}
	if got := g2.Route("emb", tensor.Shape{4, 4}); got != "adamw" {
		t.Errorf("custom patterns: emb routed to %q", got)
	}
	// custom rule
	g3, _ := NewMuonWithAdamW(MuonAdamWConfig{Match: MatchNamePrefix("hidden.")})
	if g3.Route("hidden.w", tensor.Shape{4, 4}) != "muon" || g3.Route("wq", tensor.Shape{4, 4}) != "adamw" {
		t.Error("custom Match not used")
	}
	// defaults of each side
	if lr := g.Group("muon").LR(); lr != 0.02 {
		t.Errorf("muon side lr %v", lr)
	}
	aw := g.Group("adamw").(*Optimizer)
	for k, v := range map[string]float64{"lr": 3e-4, "beta1": 0.9, "beta2": 0.95, "eps": 1e-10, "weight_decay": 0} {
		if got, _ := aw.Hyper(k); got != v {
			t.Errorf("adamw side %s = %v, want %v", k, got, v)
		}
	}

	// groups = separate solvers, bit for bit
	for _, dtype := range []string{"float32", "float64"} {
		a, b := newTestModel(dtype, 6), newTestModel(dtype, 6)
		grp, _ := NewMuonWithAdamW(MuonAdamWConfig{Muon: []Option{WithWeightDecay(0.1)}, AdamW: []Option{WithLR(1e-2)}})
		mu, _ := NewMuon(WithWeightDecay(0.1))
		adw, _ := NewAdamW(WithLR(1e-2), WithBetas(0.9, 0.95), WithEps(1e-10), WithWeightDecay(0))
		for k := 0; k < 5; k++ {
			a.fillGrads()
			b.fillGrads()
			if err := grp.Step(Params(a.ps...)); err != nil {
				t.Fatal(err)
			}
			if err := mu.Step(Params(b.ps[0])); err != nil { // w1 4x3
				t.Fatal(err)
			}
			if err := adw.Step(Params(b.ps[1], b.ps[2])); err != nil { // b1, w2 (3-D)
				t.Fatal(err)
			}
		}
		if !sameBits(a.snapshot(), b.snapshot()) {
			t.Fatalf("%s: Muon+AdamW groups differ from the two solvers run separately", dtype)
		}
	}
}

// TestMuonWithAdamWMoonlight: the Moonlight combination shares lr, weight decay and schedule.
func TestMuonWithAdamWMoonlight(t *testing.T) {
	g, err := NewMuonWithAdamW(MuonAdamWConfig{Moonlight: true, Muon: []Option{WithLR(2e-3), WithWeightDecay(0.05)}})
	if err != nil {
		t.Fatal(err)
	}
	if k := g.Group("muon").Kind(); k != "muon_moonlight" {
		t.Fatalf("muon side is %q", k)
	}
	aw := g.Group("adamw").(*Optimizer)
	for k, v := range map[string]float64{"lr": 2e-3, "weight_decay": 0.05, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8} {
		if got, _ := aw.Hyper(k); got != v {
			t.Errorf("adamw side %s = %v, want %v", k, got, v)
		}
	}
	sched := schedule.Must(schedule.Cosine(1e-2, 0, 10))
	g2, _ := NewMuonWithAdamW(MuonAdamWConfig{Moonlight: true, Muon: []Option{WithSchedule(sched)}})
	m := newTestModel("float64", 2)
	for k := 0; k < 3; k++ {
		m.fillGrads()
		if err := g2.Step(Params(m.ps...)); err != nil {
			t.Fatal(err)
		}
		if a, b := g2.Group("muon").LR(), g2.Group("adamw").LR(); a != b || a != sched.At(k+1) {
			t.Fatalf("step %d: muon lr %v, adamw lr %v, schedule %v", k, a, b, sched.At(k+1))
		}
	}
	// explicit AdamW options override the shared values
	g3, _ := NewMuonWithAdamW(MuonAdamWConfig{Moonlight: true, AdamW: []Option{WithLR(5e-4)}})
	if lr := g3.Group("adamw").LR(); lr != 5e-4 {
		t.Errorf("adamw lr override: %v", lr)
	}
	if _, err := NewMuonWithAdamW(MuonAdamWConfig{Muon: []Option{WithEps(1)}}); err == nil {
		t.Error("bad Muon option accepted")
	}
	if _, err := NewMuonWithAdamW(MuonAdamWConfig{AdamW: []Option{WithBetas(1, 0.9)}}); err == nil {
		t.Error("bad AdamW option accepted")
	}
}

// TestMuonGroupsRefuseNonMatrix: a custom Match that sends a vector to Muon makes the step fail before any
// group moves.
func TestMuonGroupsRefuseNonMatrix(t *testing.T) {
	g, _ := NewMuonWithAdamW(MuonAdamWConfig{Match: func(name string, _ tensor.Shape) bool { return name != "w2" }})
	m := newTestModel("float64", 1)
	m.fillGrads()
	before := m.snapshot()
	err := g.Step(Params(m.ps...))
	if err == nil || !strings.Contains(err.Error(), `"b1"`) {
		t.Fatalf("error %v, want one naming b1", err)
	}
	if !sameBits(before, m.snapshot()) {
		t.Fatal("refused step changed the weights")
	}
	var _ G.Solver = g
}
