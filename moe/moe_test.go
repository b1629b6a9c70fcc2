package moe

import (
	"math"
	"math/rand"
	"testing"

	"github.com/gradlab/gradlab/nn"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// net is one MoE layer in its own graph with the scalar cost Σ Y ⊙ W + Loss, its gradients, and a
// TapeMachine.
type net struct {
	g     *G.ExprGraph
	l     *Layer
	x     *G.Node
	out   *Output
	cost  *G.Node
	wrt   G.Nodes
	vm    G.VM
	costV G.Value
}

// build creates the layer from seed (the same seed gives the same weights, input, bias and cost weights).
func build(t testing.TB, cfg Config, dt tensor.Dtype, tokens int, seed int64, dense bool) *net {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	g := G.NewGraph()
	b, err := nn.NewBuilder(g, dt, rng)
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewLayer(b, "moe", cfg)
	if err != nil {
		t.Fatal(err)
	}
	// a random selection bias, so that selection differs from plain top-k of the scores
	bias := nn.Normal(0, 0.05)(rng, dt, cfg.Experts)
	copyInto(t, l.Bias.Value().(*tensor.Dense), bias)
	xv := nn.Normal(0, 1)(rng, dt, tokens, cfg.Dim)
	x := G.NewMatrix(g, dt, G.WithShape(tokens, cfg.Dim), G.WithName("x"), G.WithValue(xv))
	var out *Output
	if dense {
		out, err = l.ForwardDense(x)
	} else {
		out, err = l.Forward(x)
	}
	if err != nil {
		t.Fatal(err)
	}
	wv := nn.Normal(0, 1)(rng, dt, tokens, cfg.Dim)
	w := G.NewMatrix(g, dt, G.WithShape(tokens, cfg.Dim), G.WithName("cost_w"), G.WithValue(wv))
	cost := G.Must(G.Sum(G.Must(G.HadamardProd(out.Y, w))))
	if out.Loss != nil {
		cost = G.Must(G.Add(cost, out.Loss))
	}
	n := &net{g: g, l: l, x: x, out: out, cost: cost, wrt: append(l.Params(), x)}
	if _, err := G.Grad(cost, n.wrt...); err != nil {
		t.Fatal(err)
	}
	G.Read(cost, &n.costV)
	n.vm = G.NewTapeMachine(g, G.BindDualValues(n.wrt...))
	t.Cleanup(func() { n.vm.Close() })
	return n
}

func copyInto(t testing.TB, dst, src *tensor.Dense) {
	t.Helper()
	switch dst.Dtype() {
	case tensor.Float64:
		copy(dst.Data().([]float64), src.Data().([]float64))
	case tensor.Float32:
		copy(dst.Data().([]float32), src.Data().([]float32))
	}
}

// run runs forward and backward once, with zeroed gradients, and returns the cost.
func (n *net) run(t testing.TB) float64 {
	t.Helper()
	for _, p := range n.wrt {
		if gv, err := p.Grad(); err == nil {
			if d, ok := gv.(*tensor.Dense); ok {
				d.Zero()
			}
		}
	}
	n.vm.Reset()
	if err := n.vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	return f64s(t, n.costV)[0]
}

func f64s(t testing.TB, v G.Value) []float64 {
	t.Helper()
	switch x := v.(type) {
	case *tensor.Dense:
		switch x.Dtype() {
		case tensor.Float64:
			return append([]float64(nil), x.Data().([]float64)[:x.Shape().TotalSize()]...)
		case tensor.Float32:
			out := make([]float64, x.Shape().TotalSize())
			for i, v := range x.Data().([]float32)[:len(out)] {
				out[i] = float64(v)
			}
			return out
		}
	case *G.F64:
		return []float64{float64(*x)}
	case *G.F32:
		return []float64{float64(*x)}
	}
	t.Fatalf("unexpected value %T", v)
	return nil
}

func grad(t testing.TB, n *G.Node) []float64 {
	t.Helper()
	gv, err := n.Grad()
	if err != nil {
		t.Fatalf("%v: %v", n, err)
	}
	return f64s(t, gv)
}

// maxRelDiff returns max|a−b| / max(1, max|b|).
func maxRelDiff(a, b []float64) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	d, s := 0.0, 1.0
	for i := range a {
		d = math.Max(d, math.Abs(a[i]-b[i]))
		s = math.Max(s, math.Abs(b[i]))
	}
	return d / s
}

func smallConfig(r Router, shared int) Config {
	return Config{Dim: 8, Hidden: 6, Experts: 6, TopK: 2, Shared: shared, Router: r, AuxAlpha: 0.3, ZBeta: 0.2}
}

// TestSparseEqualsDense checks Forward (the sparse Experts op) against ForwardDense (every expert on every
// token, gated) in values and gradients, float64.
func TestSparseEqualsDense(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
	}{
		{"softmax", smallConfig(Softmax, 0)},
		{"softmax+shared", smallConfig(Softmax, 1)},
		{"sigmoid", smallConfig(Sigmoid, 0)},
		{"sigmoid+shared", smallConfig(Sigmoid, 2)},
	}
	c := smallConfig(Sigmoid, 1)
	c.RouteScale, c.Groups, c.TopKGroups = 2.5, 3, 2
	cases = append(cases, struct {
		name string
		cfg  Config
	}{"sigmoid+groups+scale", c})
	c = smallConfig(Softmax, 1)
	c.Renorm, c.CapacityFactor = RenormOn, 1.0
	cases = append(cases, struct {
		name string
		cfg  Config
	}{"softmax-renorm+capacity", c})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			const tokens = 24
			sp := build(t, tc.cfg, tensor.Float64, tokens, 7, false)
			de := build(t, tc.cfg, tensor.Float64, tokens, 7, true)
			cs, cd := sp.run(t), de.run(t)
			if d := math.Abs(cs-cd) / math.Max(1, math.Abs(cd)); d > 1e-10 {
				t.Errorf("cost: sparse %v dense %v", cs, cd)
			}
			dy := maxRelDiff(f64s(t, sp.out.Y.Value()), f64s(t, de.out.Y.Value()))
			if dy > 1e-10 {
				t.Errorf("Y differs by %g", dy)
			}
			worst := 0.0
			for i := range sp.wrt {
				d := maxRelDiff(grad(t, sp.wrt[i]), grad(t, de.wrt[i]))
				worst = math.Max(worst, d)
				if d > 1e-10 {
					t.Errorf("gradient of %v differs by %g", sp.wrt[i].Name(), d)
				}
				if nz := maxRelDiff(grad(t, sp.wrt[i]), make([]float64, sp.wrt[i].Shape().TotalSize())); nz == 0 {
					t.Errorf("gradient of %v is zero", sp.wrt[i].Name())
				}
			}
			st := sp.l.Stats()
			if tc.cfg.CapacityFactor > 0 && st.DroppedFraction == 0 {
				t.Errorf("capacity case dropped nothing: %+v", st)
			}
			t.Logf("max rel diff: Y %.2g, gradients %.2g; load %v kept %v, dropped %.3f", dy, worst, st.Load, st.Kept, st.DroppedFraction)
		})
	}
}

// TestSparseEqualsDenseFloat32 checks the float32 path against the dense reference at float32 precision.
func TestSparseEqualsDenseFloat32(t *testing.T) {
	cfg := smallConfig(Sigmoid, 1)
	sp := build(t, cfg, tensor.Float32, 24, 3, false)
	de := build(t, cfg, tensor.Float32, 24, 3, true)
	sp.run(t)
	de.run(t)
	if d := maxRelDiff(f64s(t, sp.out.Y.Value()), f64s(t, de.out.Y.Value())); d > 1e-5 {
		t.Errorf("Y differs by %g", d)
	}
	for i := range sp.wrt {
		if d := maxRelDiff(grad(t, sp.wrt[i]), grad(t, de.wrt[i])); d > 1e-4 {
			t.Errorf("gradient of %v differs by %g", sp.wrt[i].Name(), d)
		}
	}
}

// TestGradCheck compares the gradients of a whole small MoE block (sigmoid router, shared expert, capacity
// limit, balancing and z losses) with central finite differences, float64.
func TestGradCheck(t *testing.T) {
	for _, r := range []Router{Softmax, Sigmoid} {
		t.Run(r.String(), func(t *testing.T) {
			cfg := Config{Dim: 5, Hidden: 4, Experts: 4, TopK: 2, Shared: 1, Router: r, AuxAlpha: 0.5, ZBeta: 0.3, CapacityFactor: 1.25}
			n := build(t, cfg, tensor.Float64, 10, 11, false)
			n.run(t)
			analytic := make([][]float64, len(n.wrt))
			for i, p := range n.wrt {
				analytic[i] = grad(t, p)
			}
			const h = 1e-6
			worst := 0.0
			for i, p := range n.wrt {
				data := p.Value().(*tensor.Dense).Data().([]float64)
				scale := 1.0
				for _, v := range analytic[i] {
					scale = math.Max(scale, math.Abs(v))
				}
				for j := range data {
					old := data[j]
					data[j] = old + h
					cp := n.run(t)
					data[j] = old - h
					cm := n.run(t)
					data[j] = old
					num := (cp - cm) / (2 * h)
					e := math.Abs(num-analytic[i][j]) / scale
					worst = math.Max(worst, e)
					if e > 1e-6 {
						t.Errorf("%v[%d]: analytic %.10g numeric %.10g", p.Name(), j, analytic[i][j], num)
					}
				}
			}
			t.Logf("worst relative error %.3g", worst)
		})
	}
}

// TestAuxLossUniform checks that uniform routing (a zero gate: every score equal) gives the balancing loss
// its known minimum, exactly α, for both routers, and that a skewed router gives more.
func TestAuxLossUniform(t *testing.T) {
	for _, r := range []Router{Softmax, Sigmoid} {
		const alpha = 0.01
		cfg := Config{Dim: 8, Hidden: 4, Experts: 8, TopK: 2, Router: r, AuxAlpha: alpha, Init: nn.Zeros()}
		n := build(t, cfg, tensor.Float64, 64, 1, false)
		n.l.Bias.Value().(*tensor.Dense).Zero()
		n.run(t)
		got := f64s(t, n.out.AuxLoss.Value())[0]
		if math.Abs(got-alpha) > 1e-15 {
			t.Errorf("%v: uniform routing gives L_aux = %.17g, want %g", r, got, alpha)
		}
		// skew: the first expert's gate column favours it for every token
		cfg.Init = nil
		n = build(t, cfg, tensor.Float64, 64, 1, false)
		skew(n, map[int]float64{0: 0.5})
		n.run(t)
		if got := f64s(t, n.out.AuxLoss.Value())[0]; !(got > alpha) {
			t.Errorf("%v: skewed routing gives L_aux = %g, want > %g", r, got, alpha)
		}
	}
}

// skew shifts the input by +1 and adds shift[i] to every weight of expert i's gate column, so that expert i
// is favoured by every token (float64 nets).
func skew(n *net, shift map[int]float64) {
	for i := range n.x.Value().(*tensor.Dense).Data().([]float64) {
		n.x.Value().(*tensor.Dense).Data().([]float64)[i]++
	}
	w := n.l.Gate.W.Value().(*tensor.Dense).Data().([]float64)
	e := n.l.Config().Experts
	for r := 0; r < n.l.Config().Dim; r++ {
		for i, s := range shift {
			w[r*e+i] += s
		}
	}
}

// TestBiasBalancing runs UpdateBias over a skewed router (no gradient steps) and checks that the load's
// coefficient of variation falls.
func TestBiasBalancing(t *testing.T) {
	for _, r := range []Router{Sigmoid, Softmax} {
		cfg := Config{Dim: 16, Hidden: 4, Experts: 8, TopK: 2, Router: r, BiasGamma: 1e-2}
		n := build(t, cfg, tensor.Float64, 256, 5, false)
		n.l.Bias.Value().(*tensor.Dense).Zero()
		skew(n, map[int]float64{0: 0.06, 1: 0.04}) // experts 0 and 1 favoured
		var cv0, cv float64
		for step := 0; step < 80; step++ {
			n.run(t)
			st := n.l.Stats()
			if step == 0 {
				cv0 = st.CV
			}
			cv = st.CV
			if _, err := n.l.UpdateBias(); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("%v: CV %.3f → %.3f, bias %.3f", r, cv0, cv, n.l.BiasValues())
		if !(cv < cv0/2) {
			t.Errorf("%v: CV went from %.3f to %.3f, want it at least halved", r, cv0, cv)
		}
	}
}

// TestTopKHash checks that TopK's parameters are part of its identity.
func TestTopKHash(t *testing.T) {
	a, b := &topKOp{k: 2, groups: 1, topkGroups: 1}, &topKOp{k: 4, groups: 1, topkGroups: 1}
	if a.Hashcode() == b.Hashcode() {
		t.Error("TopK{2} and TopK{4} hash alike")
	}
	c := &topKOp{k: 2, groups: 2, topkGroups: 1}
	if a.Hashcode() == c.Hashcode() {
		t.Error("grouping is not hashed")
	}
	if a.Hashcode() != (&topKOp{k: 2, groups: 1, topkGroups: 1, rec: &recorder{}}).Hashcode() {
		t.Error("equal TopK ops hash differently")
	}
	g := G.NewGraph()
	s := G.NewMatrix(g, tensor.Float64, G.WithShape(3, 6), G.WithName("s"), G.WithValue(nn.Normal(0, 1)(rand.New(rand.NewSource(1)), tensor.Float64, 3, 6)))
	bias := G.NewVector(g, tensor.Float64, G.WithShape(6), G.WithName("b"), G.WithValue(tensor.New(tensor.WithShape(6), tensor.Of(tensor.Float64))))
	m2 := G.Must(TopK(s, bias, 2))
	m4 := G.Must(TopK(s, bias, 4))
	if m2 == m4 {
		t.Fatal("TopK(s, b, 2) and TopK(s, b, 4) were merged into one node")
	}
	vm := G.NewTapeMachine(g)
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		n *G.Node
		k int
	}{{m2, 2}, {m4, 4}} {
		v := f64s(t, c.n.Value())
		for r := 0; r < 3; r++ {
			sum := 0.0
			for _, x := range v[r*6 : (r+1)*6] {
				sum += x
			}
			if sum != float64(c.k) {
				t.Errorf("TopK{%d} row %d selects %v", c.k, r, sum)
			}
		}
	}
}

// TestTopKSelection checks the selection against a direct computation, with the bias and with groups.
func TestTopKSelection(t *testing.T) {
	s := []float64{0.9, 0.1, 0.8, 0.7, 0.2, 0.3}
	b := []float64{0, 0.5, 0, 0, 0, 0}
	sel := make([]int32, 2)
	selectTopK(s, b, 1, 6, 2, 1, 1, sel)
	if sel[0] != 0 || sel[1] != 2 { // 0.9, 0.8 beat 0.1+0.5
		t.Errorf("plain: %v", sel)
	}
	b[1] = 0.85
	selectTopK(s, b, 1, 6, 2, 1, 1, sel)
	if sel[0] != 1 || sel[1] != 0 { // 0.95 (biased) then 0.9
		t.Errorf("biased: %v", sel)
	}
	// 3 groups of 2: {0.9, 0.95}, {0.8, 0.7}, {0.2, 0.3}; keep 1 group: the first
	selectTopK(s, b, 1, 6, 2, 3, 1, sel)
	if sel[0] != 1 || sel[1] != 0 {
		t.Errorf("grouped: %v", sel)
	}
	b[1] = 0
	// groups {0.9, 0.1}=1.0, {0.8, 0.7}=1.5: the second group wins, k=2 within it
	selectTopK(s, b, 1, 6, 2, 3, 1, sel)
	if sel[0] != 2 || sel[1] != 3 {
		t.Errorf("grouped 2: %v", sel)
	}
}

// TestStats checks the parameter counts and the dropped fraction's bookkeeping.
func TestStats(t *testing.T) {
	cfg := Config{Dim: 8, Hidden: 6, Experts: 6, TopK: 2, Shared: 1, CapacityFactor: 1}
	n := build(t, cfg, tensor.Float64, 30, 2, false)
	n.run(t)
	st := n.l.Stats()
	if st.Tokens != 30 {
		t.Errorf("tokens %d", st.Tokens)
	}
	tot, kept := 0, 0
	for i := range st.Load {
		tot += st.Load[i]
		kept += st.Kept[i]
		if st.Kept[i] > n.out.Capacity {
			t.Errorf("expert %d keeps %d > capacity %d", i, st.Kept[i], n.out.Capacity)
		}
	}
	if tot != 60 || math.Abs(st.DroppedFraction-float64(tot-kept)/60) > 1e-15 {
		t.Errorf("load %v kept %v dropped %v", st.Load, st.Kept, st.DroppedFraction)
	}
	if st.ActiveParams != 8*6+3*8*6+2*3*8*6 || st.TotalParams != 8*6+3*8*6+6*3*8*6 {
		t.Errorf("params %d / %d", st.ActiveParams, st.TotalParams)
	}
	count := 0
	for _, p := range n.l.Params() {
		count += p.Shape().TotalSize()
	}
	if count != st.TotalParams {
		t.Errorf("TotalParams %d, parameters hold %d", st.TotalParams, count)
	}
}

// TestBadConfig checks that bad configurations are errors.
func TestBadConfig(t *testing.T) {
	g := G.NewGraph()
	b, _ := nn.NewBuilder(g, tensor.Float64, rand.New(rand.NewSource(1)))
	for _, c := range []Config{
		{Dim: 0, Hidden: 4, Experts: 4, TopK: 2},
		{Dim: 4, Hidden: 4, Experts: 4, TopK: 5},
		{Dim: 4, Hidden: 4, Experts: 4, TopK: 2, AuxAlpha: -1},
		{Dim: 4, Hidden: 4, Experts: 6, TopK: 2, Groups: 4},
		{Dim: 4, Hidden: 4, Experts: 6, TopK: 4, Groups: 3, TopKGroups: 1},
	} {
		if _, err := NewLayer(b, "bad", c); err == nil {
			t.Errorf("config %+v accepted", c)
		}
	}
}

// TestExpertsCache checks that the backward op reuses the forward pass's activations only for the same
// inputs: after a forward pass on one x, a backward pass on another x must equal one computed from scratch.
func TestExpertsCache(t *testing.T) {
	rng := rand.New(rand.NewSource(9))
	const tk, d, f, e = 12, 5, 4, 3
	nd := func(shape ...int) *tensor.Dense { return nn.Normal(0, 1)(rng, tensor.Float64, shape...) }
	keep := tensor.New(tensor.WithShape(tk, e), tensor.Of(tensor.Float64))
	gates := nd(tk, e)
	for r := 0; r < tk; r++ {
		keep.Data().([]float64)[r*e+r%e] = 1
		keep.Data().([]float64)[r*e+(r+1)%e] = 1
	}
	x1, x2, w1, w3, w2, dy := nd(tk, d), nd(tk, d), nd(e, d, f), nd(e, d, f), nd(e, f, d), nd(tk, d)
	fwd := &expertsOp{t: tk, d: d, f: f, e: e}
	gradOf := func(op *expertsGradOp, x *tensor.Dense) []float64 {
		v, err := op.Do(x, gates, keep, w1, w3, w2, dy)
		if err != nil {
			t.Fatal(err)
		}
		return f64s(t, v)
	}
	fresh := func(x *tensor.Dense) []float64 {
		return gradOf(&expertsGradOp{expertsOp: expertsOp{t: tk, d: d, f: f, e: e}}, x)
	}
	shared := &expertsGradOp{expertsOp: expertsOp{t: tk, d: d, f: f, e: e}, fwd: fwd}
	if _, err := fwd.Do(x1, gates, keep, w1, w3, w2); err != nil {
		t.Fatal(err)
	}
	if d := maxRelDiff(gradOf(shared, x1), fresh(x1)); d != 0 {
		t.Errorf("cached backward differs from a fresh one by %g", d)
	}
	if _, err := fwd.Do(x1, gates, keep, w1, w3, w2); err != nil {
		t.Fatal(err)
	}
	got, want := gradOf(shared, x2), fresh(x2)
	if d := maxRelDiff(got, want); d != 0 {
		t.Errorf("backward on other inputs used stale activations: differs by %g", d)
	}
	if d := maxRelDiff(fresh(x1), want); d == 0 {
		t.Error("test is vacuous: x1 and x2 give the same gradient")
	}
}

// TestExpertsLispMachine checks the op's ADOp (LispMachine) gradients against the TapeMachine's.
func TestExpertsLispMachine(t *testing.T) {
	const tk, d, f, e = 10, 4, 3, 4
	grads := func(lisp bool) [][]float64 {
		rng := rand.New(rand.NewSource(4))
		g := G.NewGraph()
		nd := func(name string, shape ...int) *G.Node {
			return G.NewTensor(g, tensor.Float64, len(shape), G.WithShape(shape...), G.WithName(name),
				G.WithValue(nn.Normal(0, 1)(rng, tensor.Float64, shape...)))
		}
		x, w1, w3, w2 := nd("x", tk, d), nd("w1", e, d, f), nd("w3", e, d, f), nd("w2", e, f, d)
		kv := tensor.New(tensor.WithShape(tk, e), tensor.Of(tensor.Float64))
		gv := nn.Normal(0, 1)(rng, tensor.Float64, tk, e)
		for r := 0; r < tk; r++ {
			for _, j := range []int{r % e, (r + 2) % e} {
				kv.Data().([]float64)[r*e+j] = 1
			}
		}
		for i, k := range kv.Data().([]float64) {
			gv.Data().([]float64)[i] *= k
		}
		keep := G.NewMatrix(g, tensor.Float64, G.WithShape(tk, e), G.WithName("keep"), G.WithValue(kv))
		gates := G.NewMatrix(g, tensor.Float64, G.WithShape(tk, e), G.WithName("gates"), G.WithValue(gv))
		y := G.Must(Experts(x, gates, keep, w1, w3, w2))
		cost := G.Must(G.Sum(G.Must(G.HadamardProd(y, nd("cw", tk, d)))))
		wrt := G.Nodes{x, gates, w1, w3, w2}
		var vm G.VM
		if lisp {
			vm = G.NewLispMachine(g)
		} else {
			if _, err := G.Grad(cost, wrt...); err != nil {
				t.Fatal(err)
			}
			vm = G.NewTapeMachine(g, G.BindDualValues(wrt...))
		}
		defer vm.Close()
		if err := vm.RunAll(); err != nil {
			t.Fatal(err)
		}
		out := make([][]float64, len(wrt))
		for i, n := range wrt {
			out[i] = grad(t, n)
		}
		return out
	}
	tape, lisp := grads(false), grads(true)
	for i := range tape {
		if d := maxRelDiff(lisp[i], tape[i]); d > 1e-12 {
			t.Errorf("input %d: LispMachine gradient differs by %g", i, d)
		}
	}
}
