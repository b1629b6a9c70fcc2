package solvers

import (
	"bytes"
	"errors"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// testModel is a few named parameters of mixed shapes in one dtype, with a seeded gradient stream.
type testModel struct {
	ps  []*Param
	rng *rand.Rand
}

func newTestModel(dtype string, seed int64) *testModel {
	rng := rand.New(rand.NewSource(seed))
	shapes := map[string][]int{"w1": {4, 3}, "b1": {3}, "w2": {2, 3, 2}}
	m := &testModel{rng: rand.New(rand.NewSource(seed + 1))}
	for _, name := range []string{"w1", "b1", "w2"} {
		sh := shapes[name]
		n := tensor.Shape(sh).TotalSize()
		init := make([]float64, n)
		for i := range init {
			init[i] = rng.NormFloat64()
		}
		if dtype == "float32" {
			m.ps = append(m.ps, NewParamFrom(name, sh, toF32(init)))
		} else {
			m.ps = append(m.ps, NewParamFrom(name, sh, init))
		}
	}
	return m
}

// fillGrads writes the next seeded gradients (a function of the weights plus noise, so trajectories differ
// when state is mixed up).
func (m *testModel) fillGrads() {
	for _, p := range m.ps {
		x := values(p)
		g := make([]float64, len(x))
		for i := range g {
			g[i] = 0.5*x[i] + m.rng.NormFloat64()
		}
		setGrad(p, g)
	}
}

func (m *testModel) snapshot() [][]float64 {
	out := make([][]float64, len(m.ps))
	for i, p := range m.ps {
		out[i] = values(p)
	}
	return out
}

func sameBits(a, b [][]float64) bool {
	for i := range a {
		for j := range a[i] {
			if math.Float64bits(a[i][j]) != math.Float64bits(b[i][j]) {
				return false
			}
		}
	}
	return true
}

// statefulCases build solvers with every buffer switched on.
func statefulCases() map[string]func() (Solver, error) {
	return map[string]func() (Solver, error){
		"sgd":    func() (Solver, error) { return NewSGD(WithMomentum(0.9), Set("dampening", 0.1), WithWeightDecay(0.01)) },
		"adam":   func() (Solver, error) { return NewAdam(WithAMSGrad(true), WithWeightDecay(0.01)) },
		"adamw":  func() (Solver, error) { return NewAdamW(WithAMSGrad(true)) },
		"adamax": func() (Solver, error) { return NewAdamax() },
		"nadam":  func() (Solver, error) { return NewNAdam(WithWeightDecay(0.01)) },
		"radam":  func() (Solver, error) { return NewRAdam() },
		"adagrad": func() (Solver, error) {
			return NewAdaGrad(Set("lr_decay", 0.01), Set("initial_accumulator_value", 0.1))
		},
		"adadelta": func() (Solver, error) { return NewAdaDelta() },
		"rmsprop": func() (Solver, error) {
			return NewRMSprop(WithMomentum(0.9), SetFlag("centered", true))
		},
		"diffgrad":       func() (Solver, error) { return NewDiffGrad(WithWeightDecay(0.01)) },
		"diffgrad_paper": func() (Solver, error) { return NewDiffGradPaper() },
		"adabelief":      func() (Solver, error) { return NewAdaBelief(WithAMSGrad(true), WithWeightDecay(0.01)) },
		"lion":           func() (Solver, error) { return NewLion(WithWeightDecay(0.1), SetFlag("decoupled_weight_decay", true)) },
		"signum":         func() (Solver, error) { return NewSignum() },
		"grams":          func() (Solver, error) { return NewGrams(WithWeightDecay(0.01)) },
		"adan":           func() (Solver, error) { return NewAdan(Set("max_grad_norm", 1), WithWeightDecay(0.02)) },
		"adamp":          func() (Solver, error) { return NewAdamP(WithWeightDecay(0.1), Set("delta", 10)) },
		"sgdp":           func() (Solver, error) { return NewSGDP(WithMomentum(0.9), WithWeightDecay(0.01), Set("delta", 10)) },
		"lookahead-pullback": func() (Solver, error) {
			s, _ := NewSGD(WithMomentum(0.9))
			return NewLookahead(s, Set("k", 2), WithPullback("pullback"))
		},
		"clipnorm-adam": func() (Solver, error) {
			a, _ := NewAdam()
			return NewClipNorm(a, 1)
		},
		"groups": func() (Solver, error) {
			a, _ := NewAdamW()
			s, _ := NewSGD(WithMomentum(0.9))
			return NewGroups(Route{Name: "matrices", Match: MatchMatrices, Solver: a}, Route{Name: "rest", Solver: s})
		},
	}
}

// roundTripRun holds the solvers and models of a round trip: straight took n+m steps on ref; saved took n
// steps on run, its state was loaded into resumed, which took the m others on run.
type roundTripRun struct {
	straight, saved, resumed Solver
	ref, run                 *testModel
}

// roundTrip is the state round-trip check every solver shares: n+m steps straight must equal n steps, a
// save to a file, a load into a fresh solver and m more steps, bit for bit (weights and re-saved state);
// the loaded state must re-save to the saved bytes; gradients must be zero afterwards. model builds the
// test model (nil: newTestModel(dtype, 1)); step takes one step (nil: Step with all parameters).
func roundTrip(t *testing.T, build func() (Solver, error), dtype string, n, m int, model func() *testModel, step func(Solver, *testModel) error) roundTripRun {
	t.Helper()
	if model == nil {
		model = func() *testModel { return newTestModel(dtype, 1) }
	}
	if step == nil {
		step = func(s Solver, tm *testModel) error { return s.Step(Params(tm.ps...)) }
	}
	steps := func(s Solver, tm *testModel, k int) {
		t.Helper()
		for i := 0; i < k; i++ {
			tm.fillGrads()
			if err := step(s, tm); err != nil {
				t.Fatal(err)
			}
		}
	}
	var r roundTripRun
	var err error
	if r.straight, err = build(); err != nil {
		t.Fatal(err)
	}
	r.ref, r.run = model(), model()
	steps(r.straight, r.ref, n+m)
	r.saved, _ = build()
	steps(r.saved, r.run, n)
	path := filepath.Join(t.TempDir(), "state.safetensors")
	if err := SaveStateFile(path, r.saved); err != nil {
		t.Fatal(err)
	}
	r.resumed, _ = build()
	if err := LoadStateFile(path, r.resumed); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stateBytesOf(t, r.saved), stateBytesOf(t, r.resumed)) {
		t.Fatal("the loaded state does not re-save to the saved bytes")
	}
	if r.saved.StateBytes() != r.resumed.StateBytes() {
		t.Fatalf("StateBytes %d after load, %d before", r.resumed.StateBytes(), r.saved.StateBytes())
	}
	steps(r.resumed, r.run, m)
	if !sameBits(r.ref.snapshot(), r.run.snapshot()) {
		t.Fatalf("%s: save/load changed the trajectory", dtype)
	}
	if !bytes.Equal(stateBytesOf(t, r.straight), stateBytesOf(t, r.resumed)) {
		t.Fatalf("%s: state after n+m steps differs from n + save/load + m", dtype)
	}
	for _, g := range gradSnapshot(Params(r.run.ps...)) {
		for _, v := range g {
			if v != 0 {
				t.Fatal("gradient not zeroed after a step")
			}
		}
	}
	return r
}

// TestStateRoundTrip: N steps, save, load into a fresh solver, M steps equals N+M steps bit for bit.
func TestStateRoundTrip(t *testing.T) {
	for name, build := range statefulCases() {
		for _, dtype := range []string{"float32", "float64"} {
			t.Run(name+"/"+dtype, func(t *testing.T) { roundTrip(t, build, dtype, 7, 5, nil, nil) })
		}
	}
}

// stateBytesOf serialises a solver's state, to compare states.
func stateBytesOf(t *testing.T, s Solver) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := SaveState(&buf, s); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestCorruptStateFileChangesNothing(t *testing.T) {
	m := newTestModel("float64", 3)
	s, _ := NewAdam(WithAMSGrad(true))
	for k := 0; k < 3; k++ {
		m.fillGrads()
		if err := s.Step(Params(m.ps...)); err != nil {
			t.Fatal(err)
		}
	}
	good := stateBytesOf(t, s)
	other, _ := NewAdam(WithAMSGrad(true))
	m2 := newTestModel("float64", 9)
	m2.fillGrads()
	_ = other.Step(Params(m2.ps...))
	before := stateBytesOf(t, other)

	sgd, _ := NewSGD(WithMomentum(0.9))
	m3 := newTestModel("float64", 3)
	m3.fillGrads()
	_ = sgd.Step(Params(m3.ps...))
	wrongKind := stateBytesOf(t, sgd)
	// A file whose parameter record disagrees with its tensors (the checksum covers the data only).
	badShape := bytes.Replace(good, []byte(`\"shape\":[4,3]`), []byte(`\"shape\":[3,4]`), 1)
	if bytes.Equal(badShape, good) {
		t.Fatal("test setup: shape record not found")
	}

	flipped := append([]byte(nil), good...)
	flipped[len(flipped)-3] ^= 0x40
	badHeader := append([]byte(nil), good...)
	badHeader[12] = '!'
	cases := map[string][]byte{
		"empty":          nil,
		"truncated-head": good[:5],
		"truncated-data": good[:len(good)-8],
		"flipped-bit":    flipped,
		"bad-header":     badHeader,
		"wrong-kind":     wrongKind,
		"record-shape":   badShape,
		"not-safetensor": []byte(strings.Repeat("x", 64)),
	}
	for name, data := range cases {
		err := LoadState(bytes.NewReader(data), other)
		if err == nil {
			t.Errorf("%s: loaded without error", name)
			continue
		}
		t.Logf("%s: %v", name, err)
		if !bytes.Equal(stateBytesOf(t, other), before) {
			t.Errorf("%s: failed load changed the state", name)
		}
	}
	if err := LoadStateFile(filepath.Join(t.TempDir(), "missing"), other); err == nil {
		t.Error("missing file loaded")
	}
	if _, err := os.Stat(filepath.Join(t.TempDir())); err != nil {
		t.Fatal(err)
	}
}

// TestStateKeyedByName: parameters passed in another order, or a subset, keep their own state.
func TestStateKeyedByName(t *testing.T) {
	for _, dtype := range []string{"float32", "float64"} {
		a := newTestModel(dtype, 5)
		b := newTestModel(dtype, 5)
		sa, _ := NewAdam()
		sb, _ := NewAdam()
		for k := 0; k < 6; k++ {
			a.fillGrads()
			b.fillGrads()
			if err := sa.Step(Params(a.ps...)); err != nil {
				t.Fatal(err)
			}
			// b: reversed order, and on odd steps only a subset (w2 skipped; its gradient is then reset
			// so both models see the same gradient stream).
			rev := []*Param{b.ps[2], b.ps[1], b.ps[0]}
			if k%2 == 1 {
				rev = rev[1:]
			}
			if err := sb.Step(Params(rev...)); err != nil {
				t.Fatal(err)
			}
			if k%2 == 1 {
				// bring w2 along by a separate step with the same gradient a saw
				if err := sb.Step(Params(b.ps[2])); err != nil {
					t.Fatal(err)
				}
			}
		}
		if !sameBits(a.snapshot(), b.snapshot()) {
			t.Fatalf("%s: order or subsets changed the result", dtype)
		}
		if sb.ParamStep("w2") != 6 || sb.ParamStep("w1") != 6 {
			t.Fatalf("per-parameter steps: w1 %d w2 %d", sb.ParamStep("w1"), sb.ParamStep("w2"))
		}
	}
}

func TestBadHyperparameters(t *testing.T) {
	bad := map[string]func() (Solver, error){
		"negative lr":        func() (Solver, error) { return NewAdam(WithLR(-1)) },
		"beta1 = 1":          func() (Solver, error) { return NewAdam(WithBetas(1, 0.999)) },
		"beta2 < 0":          func() (Solver, error) { return NewAdamW(WithBetas(0.9, -0.1)) },
		"NaN eps":            func() (Solver, error) { return NewAdam(WithEps(math.NaN())) },
		"unknown key":        func() (Solver, error) { return NewSGD(WithBetas(0.9, 0.99)) },
		"flag not 0/1":       func() (Solver, error) { return NewAdam(Set("amsgrad", 0.5)) },
		"negative wd":        func() (Solver, error) { return NewSGD(WithWeightDecay(-0.1)) },
		"nesterov without μ": func() (Solver, error) { return NewSGD(WithNesterov(true)) },
		"momentum 1":         func() (Solver, error) { return NewSGD(WithMomentum(1)) },
		"rho > 1":            func() (Solver, error) { return NewAdaDelta(Set("rho", 1.5)) },
		"lookahead k = 0": func() (Solver, error) {
			s, _ := NewSGD()
			return NewLookahead(s, Set("k", 0))
		},
		"lookahead pullback on adam": func() (Solver, error) {
			s, _ := NewAdam()
			return NewLookahead(s, WithPullback("pullback"))
		},
		"clip norm 0": func() (Solver, error) {
			s, _ := NewSGD()
			return NewClipNorm(s, 0)
		},
		"sam negative rho": func() (Solver, error) {
			s, _ := NewSGD()
			return NewSAM(s, WithRho(-1))
		},
		"unknown kind": func() (Solver, error) { return New("adamq") },
	}
	for name, build := range bad {
		s, err := build()
		if err == nil {
			t.Errorf("%s: accepted (%v)", name, s)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	s, _ := NewAdam()
	if err := s.SetLR(-3); err == nil || s.LR() != 1e-3 {
		t.Errorf("SetLR(-3) accepted or changed lr: %v, lr %v", err, s.LR())
	}
}

// TestRefusedStepsChangeNothing: every refused step leaves weights, gradients and state as they were.
func TestRefusedStepsChangeNothing(t *testing.T) {
	for _, dtype := range []string{"float32", "float64"} {
		m := newTestModel(dtype, 11)
		s, _ := NewAdamW(WithAMSGrad(true))
		m.fillGrads()
		if err := s.Step(Params(m.ps...)); err != nil {
			t.Fatal(err)
		}
		w0 := m.snapshot()
		st0 := stateBytesOf(t, s)
		other := "float64"
		if dtype == "float64" {
			other = "float32"
		}
		cases := map[string]func() []G.ValueGrad{
			"NaN gradient": func() []G.ValueGrad {
				m.fillGrads()
				g := m.ps[1].GradTensor()
				if d, ok := g.Data().([]float32); ok {
					d[1] = float32(math.NaN())
				} else {
					g.Data().([]float64)[1] = math.NaN()
				}
				return Params(m.ps...)
			},
			"Inf gradient": func() []G.ValueGrad {
				m.fillGrads()
				g := m.ps[2].GradTensor()
				if d, ok := g.Data().([]float32); ok {
					d[0] = float32(math.Inf(-1))
				} else {
					g.Data().([]float64)[0] = math.Inf(1)
				}
				return Params(m.ps...)
			},
			"shape change": func() []G.ValueGrad {
				m.fillGrads()
				w := newTestModel(dtype, 1).ps[2]
				bad := NewParamFrom("w1", []int{3, 4}, w.Tensor().Data())
				return Params(bad, m.ps[1], m.ps[2])
			},
			"dtype change": func() []G.ValueGrad {
				m.fillGrads()
				return Params(newTestModel(other, 1).ps[0], m.ps[1], m.ps[2])
			},
			"duplicate name": func() []G.ValueGrad {
				m.fillGrads()
				return Params(m.ps[0], m.ps[1], m.ps[0])
			},
			"grad shape differs": func() []G.ValueGrad {
				m.fillGrads()
				p := m.ps[1]
				g := tensor.New(tensor.WithShape(4), tensor.Of(p.Tensor().Dtype()))
				return Params(m.ps[0], NewParam("b1", p.Tensor(), g), m.ps[2])
			},
		}
		for name, mk := range cases {
			params := mk()
			grads := gradSnapshot(params)
			err := s.Step(params)
			if err == nil {
				t.Errorf("%s/%s: step accepted", dtype, name)
				continue
			}
			t.Logf("%s/%s: %v", dtype, name, err)
			if !sameBits(m.snapshot(), w0) {
				t.Errorf("%s/%s: weights changed", dtype, name)
			}
			if !bytes.Equal(stateBytesOf(t, s), st0) {
				t.Errorf("%s/%s: state changed", dtype, name)
			}
			if !sameGrads(grads, gradSnapshot(params)) {
				t.Errorf("%s/%s: gradients changed", dtype, name)
			}
		}
	}
}

func gradSnapshot(params []G.ValueGrad) [][]float64 {
	out := make([][]float64, len(params))
	for i, p := range params {
		g, _ := p.Grad()
		switch d := g.Data().(type) {
		case []float32:
			for _, v := range d {
				out[i] = append(out[i], float64(v))
			}
		case []float64:
			out[i] = append(out[i], d...)
		}
	}
	return out
}

func sameGrads(a, b [][]float64) bool {
	for i := range a {
		for j := range a[i] {
			if math.Float64bits(a[i][j]) != math.Float64bits(b[i][j]) && !(math.IsNaN(a[i][j]) && math.IsNaN(b[i][j])) {
				return false
			}
		}
	}
	return true
}

func TestSkipNonFinite(t *testing.T) {
	m := newTestModel("float64", 4)
	s, _ := NewAdam(WithNonFinite(SkipNonFinite))
	m.fillGrads()
	_ = s.Step(Params(m.ps...))
	w0 := m.snapshot()
	st0 := stateBytesOf(t, s)
	m.fillGrads()
	m.ps[0].GradTensor().Data().([]float64)[3] = math.NaN()
	if err := s.Step(Params(m.ps...)); err != nil {
		t.Fatalf("skip policy returned %v", err)
	}
	if !sameBits(m.snapshot(), w0) || s.SkippedSteps() != 1 || s.StepCount() != 1 {
		t.Fatalf("skipped step changed weights or counters (skipped %d, steps %d)", s.SkippedSteps(), s.StepCount())
	}
	if !bytes.Equal(stateBytesOf(t, s)[:0], st0[:0]) || s.ParamStep("w1") != 1 {
		t.Fatal("skipped step changed state")
	}
	for _, g := range gradSnapshot(Params(m.ps...)) {
		for _, v := range g {
			if v != 0 {
				t.Fatal("skipped step left gradients non-zero")
			}
		}
	}
}

// TestGroupsEqualSeparateSolvers: a router over two solvers equals the two solvers stepped separately.
func TestGroupsEqualSeparateSolvers(t *testing.T) {
	a := newTestModel("float32", 8)
	b := newTestModel("float32", 8)
	adam, _ := NewAdamW(WithLR(0.01))
	sgd, _ := NewSGD(WithMomentum(0.9))
	g, err := NewGroups(Route{Name: "matrices", Match: MatchMatrices, Solver: adam}, Route{Name: "rest", Solver: sgd})
	if err != nil {
		t.Fatal(err)
	}
	adam2, _ := NewAdamW(WithLR(0.01))
	sgd2, _ := NewSGD(WithMomentum(0.9))
	for k := 0; k < 5; k++ {
		a.fillGrads()
		b.fillGrads()
		if err := g.Step(Params(a.ps...)); err != nil {
			t.Fatal(err)
		}
		if err := adam2.Step(Params(b.ps[0])); err != nil {
			t.Fatal(err)
		}
		if err := sgd2.Step(Params(b.ps[1], b.ps[2])); err != nil {
			t.Fatal(err)
		}
	}
	if !sameBits(a.snapshot(), b.snapshot()) {
		t.Fatal("groups differ from separate solvers")
	}
	if g.Route("w2", tensor.Shape{2, 3, 2}) != "rest" || g.Route("w1", tensor.Shape{4, 3}) != "matrices" {
		t.Fatal("routing rule")
	}
	if err := g.SetLR(0.02); err != nil || adam.LR() != 0.02 || math.Abs(sgd.LR()-0.02) > 1e-15 {
		t.Fatalf("SetLR: %v, %v %v", err, adam.LR(), sgd.LR())
	}
	only, _ := NewGroups(Route{Name: "m", Match: MatchMatrices, Solver: adam})
	a.fillGrads()
	if err := only.Step(Params(a.ps...)); err == nil {
		t.Fatal("unrouted parameter accepted")
	}
}

func TestScheduleDrivesLR(t *testing.T) {
	lrs := []float64{}
	sched := stepsSchedule{0.1, 0.05, 0.025}
	s, _ := NewSGD(WithSchedule(sched))
	p := NewParamFrom("x", []int{1}, []float64{0})
	for k := 0; k < 3; k++ {
		lrs = append(lrs, s.LR())
		setGrad(p, []float64{1})
		if err := s.Step(Params(p)); err != nil {
			t.Fatal(err)
		}
	}
	if got := values(p)[0]; math.Abs(got+0.175) > 1e-15 {
		t.Fatalf("x = %v, want -0.175 (lrs %v)", got, lrs)
	}
	if err := s.SetLR(1); err != nil || s.LR() != 1 {
		t.Fatal("SetLR after schedule")
	}
	setGrad(p, []float64{1})
	_ = s.Step(Params(p))
	if got := values(p)[0]; math.Abs(got+1.175) > 1e-15 {
		t.Fatalf("after SetLR x = %v", got)
	}
}

type stepsSchedule []float64

func (s stepsSchedule) At(t int) float64 { return s[min(t, len(s)-1)] }

// TestNoAllocations: after the first step, a step allocates nothing, on small and on split tensors.
func TestNoAllocations(t *testing.T) {
	for _, n := range []int{1000, 1 << 18} {
		for _, kind := range Kinds() {
			s, err := New(kind)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := s.(*Optimizer); !ok {
				continue // closure methods are covered elsewhere
			}
			p32 := NewParamFrom("a", []int{n}, make([]float32, n))
			p64 := NewParamFrom("b", []int{n}, make([]float64, n))
			params := Params(p32, p64)
			if err := s.Step(params); err != nil {
				t.Fatal(err)
			}
			allocs := testing.AllocsPerRun(20, func() {
				if err := s.Step(params); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Errorf("%s (n=%d): %v allocations per step", kind, n, allocs)
			}
		}
	}
}

// TestParallelEqualsSerial: a tensor split across cores gives the same bits as small tensors stepped alone.
func TestParallelEqualsSerial(t *testing.T) {
	const n = 3 * minChunk
	rng := rand.New(rand.NewSource(2))
	big := make([]float64, n)
	for i := range big {
		big[i] = rng.NormFloat64()
	}
	pb := NewParamFrom("big", []int{n}, big)
	sb, _ := NewAdamW()
	var small []*Param
	for c := 0; c < 3; c++ {
		small = append(small, NewParamFrom(string(rune('a'+c)), []int{minChunk}, big[c*minChunk:(c+1)*minChunk]))
	}
	ss, _ := NewAdamW()
	for k := 0; k < 3; k++ {
		g := make([]float64, n)
		for i := range g {
			g[i] = rng.NormFloat64()
		}
		setGrad(pb, g)
		for c := range small {
			setGrad(small[c], g[c*minChunk:(c+1)*minChunk])
		}
		if err := sb.Step(Params(pb)); err != nil {
			t.Fatal(err)
		}
		if err := ss.Step(Params(small...)); err != nil {
			t.Fatal(err)
		}
	}
	got := values(pb)
	for c := range small {
		for i, v := range values(small[c]) {
			if math.Float64bits(v) != math.Float64bits(got[c*minChunk+i]) {
				t.Fatalf("chunk %d element %d differs", c, i)
			}
		}
	}
}

func TestDecayMask(t *testing.T) {
	w := NewParamFrom("w", []int{2, 2}, []float64{1, 1, 1, 1})
	b := NewParamFrom("b", []int{2}, []float64{1, 1})
	s, _ := NewAdamW(WithLR(0.1), WithWeightDecay(0.5), WithDecayMask(NoDecayOnVectors))
	if err := s.Step(Params(w, b)); err != nil { // zero gradients: only decay moves weights
		t.Fatal(err)
	}
	if values(w)[0] != 1-0.1*0.5 || values(b)[0] != 1 {
		t.Fatalf("mask: w %v b %v", values(w), values(b))
	}
}

// TestLBFGSRoundTripAndRefusal: L-BFGS state survives save/load bit for bit; a closure error or a NaN
// gradient leaves parameters and state as they were; other parameters than the bound ones are refused.
func TestLBFGSRoundTripAndRefusal(t *testing.T) {
	for _, dtype := range []string{"float32", "float64"} {
		p := rosenbrock()
		mk := func() (*Param, Closure) {
			x0 := []float64{-1.2, 1}
			var par *Param
			if dtype == "float32" {
				par = NewParamFrom("xy", []int{2}, toF32(x0))
			} else {
				par = NewParamFrom("xy", []int{2}, x0)
			}
			g := make([]float64, 2)
			return par, func() (float64, error) {
				x := values(par)
				p.grad(x, g)
				setGrad(par, g)
				return p.f(x), nil
			}
		}
		build := func() *LBFGS {
			l, err := NewLBFGS(Set("max_iter", 3), Set("history_size", 4), WithLineSearch("strong_wolfe"))
			if err != nil {
				t.Fatal(err)
			}
			return l
		}
		refP, refC := mk()
		ref := build()
		for k := 0; k < 8; k++ {
			if _, err := ref.StepClosure(Params(refP), refC); err != nil {
				t.Fatal(err)
			}
		}
		par, cl := mk()
		l := build()
		for k := 0; k < 5; k++ {
			if _, err := l.StepClosure(Params(par), cl); err != nil {
				t.Fatal(err)
			}
		}
		before := stateBytesOf(t, l)
		w0 := values(par)
		calls := 0
		failing := func() (float64, error) {
			calls++
			if calls == 3 {
				return 0, errors.New("model exploded")
			}
			return cl()
		}
		if _, err := l.StepClosure(Params(par), failing); err == nil {
			t.Fatal("closure error not reported")
		}
		nanC := func() (float64, error) {
			loss, _ := cl()
			setGrad(par, []float64{math.NaN(), 0})
			return loss, nil
		}
		if _, err := l.StepClosure(Params(par), nanC); err == nil {
			t.Fatal("NaN gradient accepted")
		}
		other := NewParamFrom("other", []int{2}, values(par))
		if _, err := l.StepClosure(Params(other), cl); err == nil {
			t.Fatal("foreign parameter accepted")
		}
		if !bytes.Equal(stateBytesOf(t, l), before) || !sameBits([][]float64{values(par)}, [][]float64{w0}) {
			t.Fatal("refused steps changed parameters or state")
		}
		var buf bytes.Buffer
		if err := SaveState(&buf, l); err != nil {
			t.Fatal(err)
		}
		l2 := build()
		if err := LoadState(&buf, l2); err != nil {
			t.Fatal(err)
		}
		for k := 0; k < 3; k++ {
			if _, err := l2.StepClosure(Params(par), cl); err != nil {
				t.Fatal(err)
			}
		}
		if !sameBits([][]float64{values(par)}, [][]float64{values(refP)}) {
			t.Fatalf("%s: round trip changed the trajectory: %v vs %v", dtype, values(par), values(refP))
		}
	}
}
