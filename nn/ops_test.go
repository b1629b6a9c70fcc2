package nn

import (
	"math"
	"math/rand"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// ---------- RMSNorm ----------

// composedRMSNorm is RMSNorm of a 2-D x (rows, d) built from Gorgonia's own (correct) ops, without
// InverseSqrt: Mean(Square) → Add ε → Sqrt → BroadcastHadamardDiv → BroadcastHadamardProd(γ). x is used
// as it is, never through a Reshape: in Gorgonia v0.9.18 an elementwise op whose left operand is
// Reshape(x) writes into x's memory (see TestGorgoniaReshapeTrap).
func composedRMSNorm(t *testing.T, x, gamma *G.Node, eps float64) *G.Node {
	t.Helper()
	if x.Dims() != 2 {
		t.Fatalf("composedRMSNorm wants a matrix, got %v", x.Shape())
	}
	rows, d := x.Shape()[0], x.Shape()[1]
	ms := G.Must(G.Mean(G.Must(G.Square(x)), 1))
	var epsN *G.Node
	if x.Dtype() == tensor.Float32 {
		epsN = G.NewConstant(float32(eps))
	} else {
		epsN = G.NewConstant(eps)
	}
	r := G.Must(G.Sqrt(G.Must(G.Add(ms, epsN))))
	xh := G.Must(G.BroadcastHadamardDiv(x, G.Must(G.Reshape(r, tensor.Shape{rows, 1})), nil, []byte{1}))
	return G.Must(G.BroadcastHadamardProd(xh, G.Must(G.Reshape(gamma, tensor.Shape{1, d})), nil, []byte{0}))
}

func TestRMSNormForwardMatchesComposed(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for _, eps := range []float64{DefaultEps, 0.3} {
		xv := randT(rng, tensor.Float64, 2, 2, 3, 7)
		gv := Normal(1, 0.3)(rng, tensor.Float64, 7)
		g := G.NewGraph()
		x := input(g, "x", xv.Clone().(*tensor.Dense)) // (2, 3, 7)
		x2v := xv.Clone().(*tensor.Dense)
		if err := x2v.Reshape(6, 7); err != nil {
			t.Fatal(err)
		}
		x2 := input(g, "x2", x2v) // the same values as (6, 7)
		gamma := input(g, "gamma", gv.Clone().(*tensor.Dense))
		y := G.Must(ApplyRMSNorm(x, gamma, eps))
		ref := composedRMSNorm(t, x2, gamma, eps)
		var yv, rv G.Value
		G.Read(y, &yv)
		G.Read(ref, &rv)
		vm := G.NewTapeMachine(g)
		if err := vm.RunAll(); err != nil {
			t.Fatal(err)
		}
		near(t, "RMSNorm vs composed", f64s(t, yv), f64s(t, rv), 1e-13)
		vm.Close()

		// and against a direct loop
		xs, gs, ys := xv.Data().([]float64), gv.Data().([]float64), f64s(t, yv)
		for r := 0; r < 6; r++ {
			var ss float64
			for i := 0; i < 7; i++ {
				ss += xs[r*7+i] * xs[r*7+i]
			}
			rms := math.Sqrt(ss/7 + eps)
			for i := 0; i < 7; i++ {
				if want := gs[i] * xs[r*7+i] / rms; math.Abs(ys[r*7+i]-want) > 1e-13 {
					t.Fatalf("row %d feature %d: got %v want %v", r, i, ys[r*7+i], want)
				}
			}
		}
	}
}

func TestRMSNormGradient(t *testing.T) {
	for _, eps := range []float64{DefaultEps, 0.5} {
		gradCheck(t, 2, 1e-6, func(g *G.ExprGraph) (*G.Node, G.Nodes) {
			rng := rand.New(rand.NewSource(3))
			x := input(g, "x", randT(rng, tensor.Float64, 1.5, 2, 3, 5))
			gamma := input(g, "gamma", Normal(1, 0.5)(rng, tensor.Float64, 5))
			return G.Must(ApplyRMSNorm(x, gamma, eps)), G.Nodes{x, gamma}
		})
	}
	// a vector input (a single row)
	gradCheck(t, 4, 1e-6, func(g *G.ExprGraph) (*G.Node, G.Nodes) {
		rng := rand.New(rand.NewSource(5))
		x := input(g, "x", randT(rng, tensor.Float64, 1, 6))
		gamma := input(g, "gamma", Normal(1, 0.5)(rng, tensor.Float64, 6))
		return G.Must(ApplyRMSNorm(x, gamma, DefaultEps)), G.Nodes{x, gamma}
	})
}

// The composed reference's gradients (Gorgonia's Sqrt/Div/Mean) agree with the fused op's.
func TestRMSNormGradientMatchesComposed(t *testing.T) {
	rng := rand.New(rand.NewSource(6))
	xv := randT(rng, tensor.Float64, 1, 4, 6)
	gv := Normal(1, 0.3)(rng, tensor.Float64, 6)
	wv := randT(rng, tensor.Float64, 1, 4, 6)
	grads := func(fused bool) [][]float64 {
		g := G.NewGraph()
		x := input(g, "x", xv.Clone().(*tensor.Dense))
		gamma := input(g, "gamma", gv.Clone().(*tensor.Dense))
		var y *G.Node
		if fused {
			y = G.Must(ApplyRMSNorm(x, gamma, DefaultEps))
		} else {
			y = composedRMSNorm(t, x, gamma, DefaultEps)
		}
		cost := G.Must(G.Sum(G.Must(G.HadamardProd(y, input(g, "w", wv.Clone().(*tensor.Dense))))))
		gs := mustGrad(t, cost, x, gamma)
		vals := make([]G.Value, 2)
		G.Read(gs[0], &vals[0])
		G.Read(gs[1], &vals[1])
		vm := G.NewTapeMachine(g)
		defer vm.Close()
		if err := vm.RunAll(); err != nil {
			t.Fatal(err)
		}
		return [][]float64{f64s(t, vals[0]), f64s(t, vals[1])}
	}
	a, b := grads(true), grads(false)
	near(t, "dx fused vs composed", a[0], b[0], 1e-12)
	near(t, "dγ fused vs composed", a[1], b[1], 1e-12)
}

// ---------- RoPE ----------

func TestRoPEGradient(t *testing.T) {
	for _, p := range []Pairing{Interleaved, RotateHalf} {
		r, err := NewRoPE(8, 16, 0, p)
		if err != nil {
			t.Fatal(err)
		}
		gradCheck(t, 7, 1e-6, func(g *G.ExprGraph) (*G.Node, G.Nodes) {
			x := input(g, "x", randT(rand.New(rand.NewSource(8)), tensor.Float64, 1, 2, 4, 8))
			return G.Must(r.Apply(x, 3)), G.Nodes{x}
		})
		gradCheck(t, 9, 1e-6, func(g *G.ExprGraph) (*G.Node, G.Nodes) {
			x := input(g, "x", randT(rand.New(rand.NewSource(10)), tensor.Float64, 1, 2, 3, 4, 8))
			pos := intVec(g, "pos", []int{5, 0, 7, 15})
			return G.Must(r.ApplyAt(x, pos)), G.Nodes{x}
		})
	}
}

// ropeForward applies r at offset to a (rows, d) float64 matrix through the graph op.
func ropeForward(t *testing.T, r *RoPE, x *tensor.Dense, offset int) []float64 {
	t.Helper()
	g := G.NewGraph()
	xn := input(g, "x", x)
	return forward(t, g, G.Must(r.Apply(xn, offset)))
}

func dot(a, b []float64) float64 {
	s := 0.0
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// ⟨R_p q, R_s k⟩ depends only on s − p (RoFormer §3.2), for both pairings.
func TestRoPERelativePosition(t *testing.T) {
	const d, T = 16, 12
	rng := rand.New(rand.NewSource(11))
	q, k := randT(rng, tensor.Float64, 1, d).Data().([]float64), randT(rng, tensor.Float64, 1, d).Data().([]float64)
	rep := func(v []float64) *tensor.Dense {
		b := make([]float64, 0, T*d)
		for i := 0; i < T; i++ {
			b = append(b, v...)
		}
		return tensor.New(tensor.WithShape(T, d), tensor.WithBacking(b))
	}
	for _, p := range []Pairing{Interleaved, RotateHalf} {
		r, _ := NewRoPE(d, T, 0, p)
		rq, rk := ropeForward(t, r, rep(q), 0), ropeForward(t, r, rep(k), 0)
		score := func(i, j int) float64 { return dot(rq[i*d:(i+1)*d], rk[j*d:(j+1)*d]) }
		distinct := false
		for i := 0; i+1 < T; i++ {
			for j := 0; j+1 < T; j++ {
				if a, b := score(i, j), score(i+1, j+1); math.Abs(a-b) > 1e-12 {
					t.Fatalf("%v: <R_%d q, R_%d k> = %v but <R_%d q, R_%d k> = %v", p, i, j, a, i+1, j+1, b)
				}
			}
			if math.Abs(score(0, i)-score(0, i+1)) > 1e-6 {
				distinct = true
			}
		}
		if !distinct {
			t.Fatalf("%v: scores do not depend on the offset at all", p)
		}
		// position 0 is the identity; the rotation preserves norms
		near(t, "R_0 q", rq[:d], q, 0)
		for i := 0; i < T; i++ {
			if n := dot(rq[i*d:(i+1)*d], rq[i*d:(i+1)*d]); math.Abs(n-dot(q, q)) > 1e-12 {
				t.Fatalf("%v: norm not preserved at position %d", p, i)
			}
		}
	}
}

// RotateHalf on the permuted features equals Interleaved, permuted the same way.
func TestRoPEPairingsDifferByPermutation(t *testing.T) {
	const d, T = 8, 6
	rng := rand.New(rand.NewSource(12))
	x := randT(rng, tensor.Float64, 1, 3*T, d)
	perm := PairingPermutation(d)
	xs := x.Data().([]float64)
	xp := make([]float64, len(xs))
	for row := 0; row < 3*T; row++ {
		for i := 0; i < d; i++ {
			xp[row*d+i] = xs[row*d+perm[i]]
		}
	}
	ri, _ := NewRoPE(d, 32, 0, Interleaved)
	rh, _ := NewRoPE(d, 32, 0, RotateHalf)
	yi := ropeForward(t, ri, x.Clone().(*tensor.Dense), 5)
	yh := ropeForward(t, rh, tensor.New(tensor.WithShape(3*T, d), tensor.WithBacking(xp)), 5)
	for row := 0; row < 3*T; row++ {
		for i := 0; i < d; i++ {
			if math.Abs(yh[row*d+i]-yi[row*d+perm[i]]) > 1e-15 {
				t.Fatalf("row %d feature %d: rotate-half %v, interleaved %v", row, i, yh[row*d+i], yi[row*d+perm[i]])
			}
		}
	}
	// and they are not the same map
	if maxAbsDiff(yi, ropeForward(t, rh, x.Clone().(*tensor.Dense), 5)) < 1e-3 {
		t.Fatal("the two pairings agree without the permutation")
	}
}

// Rotating rows [3, 7) of a sequence with offset 3 equals rows 3..6 of the whole sequence at offset 0;
// ApplyAt with explicit positions and the slice-level Rotate agree with both; inverse undoes.
func TestRoPEOffsetPositions(t *testing.T) {
	const d, T, B = 8, 10, 2
	rng := rand.New(rand.NewSource(13))
	for _, p := range []Pairing{Interleaved, RotateHalf} {
		r, _ := NewRoPE(d, 64, 500, p)
		x := randT(rng, tensor.Float64, 1, B, T, d)
		xs := x.Data().([]float64)
		g := G.NewGraph()
		full := forward(t, g, G.Must(r.Apply(input(g, "x", x), 0)))

		part := make([]float64, 0, B*4*d)
		for b := 0; b < B; b++ {
			part = append(part, xs[(b*T+3)*d:(b*T+7)*d]...)
		}
		mk := func() *tensor.Dense {
			return tensor.New(tensor.WithShape(B, 4, d), tensor.WithBacking(append([]float64(nil), part...)))
		}
		var want []float64
		for b := 0; b < B; b++ {
			want = append(want, full[(b*T+3)*d:(b*T+7)*d]...)
		}
		g2 := G.NewGraph()
		near(t, "offset 3", forward(t, g2, G.Must(r.Apply(input(g2, "x", mk()), 3))), want, 1e-15)

		g3 := G.NewGraph()
		at := G.Must(r.ApplyAt(input(g3, "x", mk()), intVec(g3, "pos", []int{3, 4, 5, 6})))
		near(t, "ApplyAt", forward(t, g3, at), want, 1e-15)

		buf := append([]float64(nil), part...)
		if err := Rotate(r, buf, []int{3, 4, 5, 6}, false); err != nil {
			t.Fatal(err)
		}
		near(t, "Rotate", buf, want, 1e-15)
		if err := Rotate(r, buf, []int{3, 4, 5, 6}, true); err != nil {
			t.Fatal(err)
		}
		near(t, "Rotate inverse", buf, part, 1e-15)
	}
}

func TestRoPEErrors(t *testing.T) {
	if _, err := NewRoPE(7, 4, 0, Interleaved); err == nil {
		t.Error("odd dim accepted")
	}
	if _, err := NewRoPE(8, 0, 0, Interleaved); err == nil {
		t.Error("maxPos 0 accepted")
	}
	r, _ := NewRoPE(8, 4, 0, RotateHalf)
	g := G.NewGraph()
	x := input(g, "x", randT(rand.New(rand.NewSource(1)), tensor.Float64, 1, 3, 8))
	if _, err := r.Apply(x, 2); err == nil {
		t.Error("positions past the table accepted")
	}
	if _, err := r.Apply(x, -1); err == nil {
		t.Error("negative offset accepted")
	}
	y := input(g, "y", randT(rand.New(rand.NewSource(1)), tensor.Float64, 1, 3, 6))
	if _, err := r.Apply(y, 0); err == nil {
		t.Error("wrong feature size accepted")
	}
	pos := intVec(g, "pos", []int{0, 1, 9})
	out := G.Must(r.ApplyAt(x, pos))
	vm := G.NewTapeMachine(g)
	defer vm.Close()
	var v G.Value
	G.Read(out, &v)
	if err := vm.RunAll(); err == nil {
		t.Error("run-time position past the table accepted")
	}
}

// ---------- SiLU ----------

func TestSiLU(t *testing.T) {
	rng := rand.New(rand.NewSource(14))
	xv := randT(rng, tensor.Float64, 3, 4, 6)
	xs := xv.Data().([]float64)
	xs[0], xs[1], xs[2] = 40, -40, 0
	g := G.NewGraph()
	got := forward(t, g, G.Must(SiLU(input(g, "x", xv.Clone().(*tensor.Dense)))))
	for i, z := range xs {
		if want := z / (1 + math.Exp(-z)); math.Abs(got[i]-want) > 1e-15*math.Max(1, math.Abs(want)) {
			t.Fatalf("SiLU(%v) = %v, want %v", z, got[i], want)
		}
	}
	gradCheck(t, 15, 1e-6, func(g *G.ExprGraph) (*G.Node, G.Nodes) {
		x := input(g, "x", randT(rand.New(rand.NewSource(16)), tensor.Float64, 3, 4, 6))
		return G.Must(SiLU(x)), G.Nodes{x}
	})
}

// ---------- cross-entropy ----------

// refXent is the direct computation: −mean over kept rows of log_softmax(z)[target].
func refXent(z []float64, tg []int, V int, ignore int) (float64, []float64) {
	n, loss := 0, 0.0
	grad := make([]float64, len(z))
	for _, t := range tg {
		if t != ignore {
			n++
		}
	}
	for r, t := range tg {
		if t == ignore {
			continue
		}
		row := z[r*V : (r+1)*V]
		m := math.Inf(-1)
		for _, v := range row {
			m = math.Max(m, v)
		}
		s := 0.0
		for _, v := range row {
			s += math.Exp(v - m)
		}
		logp := row[t] - m - math.Log(s)
		loss -= logp
		for j, v := range row {
			p := math.Exp(v-m) / s
			if j == t {
				p--
			}
			grad[r*V+j] = p / float64(n)
		}
	}
	return loss / float64(n), grad
}

func TestCrossEntropyForward(t *testing.T) {
	const N, V = 7, 5
	rng := rand.New(rand.NewSource(17))
	tg := []int{0, 4, 2, 2, 1, 3, 4}
	z := randT(rng, tensor.Float64, 3, N, V)
	want, _ := refXent(z.Data().([]float64), tg, V, -1000)

	g := G.NewGraph()
	logits := input(g, "logits", z.Clone().(*tensor.Dense))
	loss := G.Must(CrossEntropyInts(logits, tg))
	// Gorgonia's LogSoftMax ⊙ one-hot as a second reference
	oh := make([]float64, N*V)
	for r, c := range tg {
		oh[r*V+c] = -1.0 / N
	}
	ref := G.Must(G.Sum(G.Must(G.HadamardProd(G.Must(G.LogSoftMax(logits, 1)),
		g.Constant(tensor.New(tensor.WithShape(N, V), tensor.WithBacking(oh)))))))
	var lv, rv G.Value
	G.Read(loss, &lv)
	G.Read(ref, &rv)
	vm := G.NewTapeMachine(g)
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	got := f64s(t, lv)[0]
	if math.Abs(got-want) > 1e-14 {
		t.Errorf("loss %v, direct %v", got, want)
	}
	if r := f64s(t, rv)[0]; math.Abs(got-r) > 1e-13 {
		t.Errorf("loss %v, LogSoftMax reference %v", got, r)
	}

	// stability: shifting every logit by 1e4 changes nothing and stays finite
	shifted := z.Clone().(*tensor.Dense)
	for i, v := range shifted.Data().([]float64) {
		shifted.Data().([]float64)[i] = v + 1e4
	}
	g2 := G.NewGraph()
	s := forward(t, g2, G.Must(CrossEntropyInts(input(g2, "logits", shifted), tg)))[0]
	if math.Abs(s-want) > 1e-9 {
		t.Errorf("shifted loss %v, want %v", s, want)
	}
}

func TestCrossEntropyGradient(t *testing.T) {
	const N, V = 6, 5
	tg := []int{1, 0, 4, 3, 3, 2}
	gradCheck(t, 18, 1e-6, func(g *G.ExprGraph) (*G.Node, G.Nodes) {
		x := input(g, "logits", randT(rand.New(rand.NewSource(19)), tensor.Float64, 2, N, V))
		return G.Must(CrossEntropy(x, intVec(g, "targets", tg))), G.Nodes{x}
	})
	// with ignored rows, and a (B, T, V) input
	tg2 := []int{1, -100, 4, 3, -100, 2}
	gradCheck(t, 20, 1e-6, func(g *G.ExprGraph) (*G.Node, G.Nodes) {
		x := input(g, "logits", randT(rand.New(rand.NewSource(21)), tensor.Float64, 2, 2, 3, V))
		return G.Must(CrossEntropy(x, intVec(g, "targets", tg2), WithIgnoreIndex(-100))), G.Nodes{x}
	})

	// the gradient is exactly (softmax − onehot)/N′ (times the incoming 1)
	z := randT(rand.New(rand.NewSource(22)), tensor.Float64, 2, N, V)
	wantLoss, wantGrad := refXent(z.Data().([]float64), tg2, V, -100)
	g := G.NewGraph()
	x := input(g, "logits", z)
	loss := G.Must(CrossEntropy(x, intVec(g, "targets", tg2), WithIgnoreIndex(-100)))
	gs := mustGrad(t, loss, x)
	var lv, gv G.Value
	G.Read(loss, &lv)
	G.Read(gs[0], &gv)
	vm := G.NewTapeMachine(g)
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	if got := f64s(t, lv)[0]; math.Abs(got-wantLoss) > 1e-14 {
		t.Errorf("ignored rows: loss %v, want %v", got, wantLoss)
	}
	near(t, "softmax − onehot", f64s(t, gv), wantGrad, 1e-15)
}

func TestCrossEntropyEdgeCases(t *testing.T) {
	g := G.NewGraph()
	x := input(g, "logits", randT(rand.New(rand.NewSource(23)), tensor.Float64, 1, 3, 4))
	all := G.Must(CrossEntropyInts(x, []int{-1, -1, -1}, WithIgnoreIndex(-1)))
	gs := mustGrad(t, all, x)
	var lv, gv G.Value
	G.Read(all, &lv)
	G.Read(gs[0], &gv)
	vm := G.NewTapeMachine(g)
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	vm.Close()
	if l := f64s(t, lv)[0]; l != 0 {
		t.Errorf("all rows ignored: loss %v, want 0", l)
	}
	near(t, "all ignored gradient", f64s(t, gv), make([]float64, 12), 0)

	g2 := G.NewGraph()
	x2 := input(g2, "logits", randT(rand.New(rand.NewSource(23)), tensor.Float64, 1, 3, 4))
	bad := G.Must(CrossEntropyInts(x2, []int{0, 4, 1}))
	vm2 := G.NewTapeMachine(g2)
	defer vm2.Close()
	var bv G.Value
	G.Read(bad, &bv)
	if err := vm2.RunAll(); err == nil {
		t.Error("target 4 of 4 classes accepted")
	}
	if _, err := CrossEntropyInts(x2, []int{0, 1}); err == nil {
		t.Error("2 targets for 3 rows accepted")
	}
}

// ---------- float32 ----------

// Every op runs in float32 and agrees with float64 to float32 precision, forward and backward.
func TestFloat32(t *testing.T) {
	rng := rand.New(rand.NewSource(24))
	xv := randT(rng, tensor.Float64, 2, 2, 3, 8)
	gv := Normal(1, 0.3)(rng, tensor.Float64, 8)
	wv := randT(rng, tensor.Float64, 1, 2, 3, 8)
	rope, _ := NewRoPE(8, 8, 0, RotateHalf)
	to32 := func(d *tensor.Dense) *tensor.Dense {
		s := d.Data().([]float64)
		o := make([]float32, len(s))
		for i, v := range s {
			o[i] = float32(v)
		}
		return tensor.New(tensor.WithShape(d.Shape().Clone()...), tensor.WithBacking(o))
	}
	run := func(dt tensor.Dtype) [][]float64 {
		conv := func(d *tensor.Dense) *tensor.Dense {
			if dt == tensor.Float32 {
				return to32(d)
			}
			return d.Clone().(*tensor.Dense)
		}
		g := G.NewGraph()
		x := input(g, "x", conv(xv))
		gamma := input(g, "gamma", conv(gv))
		h := G.Must(ApplyRMSNorm(x, gamma, DefaultEps))
		h = G.Must(rope.Apply(h, 2))
		h = G.Must(SiLU(h))
		l := G.Must(CrossEntropyInts(G.Must(G.HadamardProd(h, input(g, "w", conv(wv)))), []int{0, 7, 3, 3, 5, 1}))
		gs := mustGrad(t, l, x, gamma)
		vals := make([]G.Value, 3)
		G.Read(l, &vals[0])
		G.Read(gs[0], &vals[1])
		G.Read(gs[1], &vals[2])
		vm := G.NewTapeMachine(g)
		defer vm.Close()
		if err := vm.RunAll(); err != nil {
			t.Fatal(err)
		}
		if dt == tensor.Float32 {
			if _, ok := vals[0].(*G.F32); !ok {
				t.Fatalf("float32 loss is a %T", vals[0])
			}
		}
		return [][]float64{f64s(t, vals[0]), f64s(t, vals[1]), f64s(t, vals[2])}
	}
	a, b := run(tensor.Float64), run(tensor.Float32)
	for i, what := range []string{"loss", "dx", "dγ"} {
		near(t, "float32 "+what, b[i], a[i], 2e-6)
	}
}

// ---------- hashing, registers ----------

// Every op parameter is part of WriteHash: ops that differ only in a parameter are distinct nodes in one
// graph (Gorgonia deduplicates nodes by hash), and equal ones are merged.
func TestWriteHashDistinguishesParameters(t *testing.T) {
	g := G.NewGraph()
	x := input(g, "x", randT(rand.New(rand.NewSource(25)), tensor.Float64, 1, 4, 8))
	r, _ := NewRoPE(8, 16, 0, Interleaved)
	rh, _ := NewRoPE(8, 16, 0, RotateHalf)
	rb, _ := NewRoPE(8, 16, 500, Interleaved)
	a0, a2 := G.Must(r.Apply(x, 0)), G.Must(r.Apply(x, 2))
	if a0 == a2 || a0.Hashcode() == a2.Hashcode() {
		t.Fatal("RoPE ops with offsets 0 and 2 merged")
	}
	if again := G.Must(r.Apply(x, 2)); again != a2 {
		t.Error("identical RoPE ops were not merged")
	}
	if h := G.Must(rh.Apply(x, 2)); h == a2 {
		t.Error("RoPE pairings merged")
	}
	if b := G.Must(rb.Apply(x, 2)); b == a2 {
		t.Error("RoPE bases merged")
	}
	gamma := input(g, "gamma", Ones()(nil, tensor.Float64, 8))
	if G.Must(ApplyRMSNorm(x, gamma, 1e-6)) == G.Must(ApplyRMSNorm(x, gamma, 1e-5)) {
		t.Error("RMSNorm eps merged")
	}
	tg := intVec(g, "tg", []int{1, 2, 3, 0})
	if G.Must(CrossEntropy(x, tg)) == G.Must(CrossEntropy(x, tg, WithIgnoreIndex(3))) {
		t.Error("cross-entropy ignore index merged")
	}
	var v0, v2 G.Value
	G.Read(a0, &v0)
	G.Read(a2, &v2)
	vm := G.NewTapeMachine(g)
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	if maxAbsDiff(f64s(t, v0), f64s(t, v2)) < 1e-3 {
		t.Error("offsets 0 and 2 give the same values")
	}
}

// UsePreallocDo must not trust the register it is given: another shape, another dtype, or an input's own
// memory all fall back to a fresh tensor.
func TestPreallocRegisterChecked(t *testing.T) {
	rng := rand.New(rand.NewSource(26))
	x := randT(rng, tensor.Float64, 1, 3, 4)
	gamma := Normal(1, 0.1)(rng, tensor.Float64, 4)
	op := &rmsNormOp{eps: DefaultEps, dims: 2}
	want, err := op.Do(x, gamma)
	if err != nil {
		t.Fatal(err)
	}
	xCopy := append([]float64(nil), x.Data().([]float64)...)
	for _, p := range []G.Value{
		randT(rng, tensor.Float64, 1, 5, 7),
		randT(rng, tensor.Float32, 1, 3, 4),
		x,
		G.NewF64(3),
	} {
		got, err := op.UsePreallocDo(p, x, gamma)
		if err != nil {
			t.Fatal(err)
		}
		near(t, "prealloc", f64s(t, got), f64s(t, want), 0)
		near(t, "input untouched", x.Data().([]float64), xCopy, 0)
	}
	good := tensor.New(tensor.WithShape(3, 4), tensor.Of(tensor.Float64))
	got, _ := op.UsePreallocDo(good, x, gamma)
	if got != good {
		t.Error("a fitting register was not used")
	}
}

// The LispMachine path (ADOp.DoDiff) gives the same gradients as the TapeMachine path (SDOp.SymDiff).
func TestLispMachineMatchesTape(t *testing.T) {
	rng := rand.New(rand.NewSource(27))
	xv := randT(rng, tensor.Float64, 1, 2, 3, 8)
	gv := Normal(1, 0.3)(rng, tensor.Float64, 8)
	rope, _ := NewRoPE(8, 8, 0, Interleaved)
	build := func() (*G.ExprGraph, *G.Node, G.Nodes) {
		g := G.NewGraph()
		x := input(g, "x", xv.Clone().(*tensor.Dense))
		gamma := input(g, "gamma", gv.Clone().(*tensor.Dense))
		h := G.Must(ApplyRMSNorm(x, gamma, DefaultEps))
		h = G.Must(rope.Apply(h, 1))
		h = G.Must(SiLU(h))
		l := G.Must(CrossEntropyInts(h, []int{0, 7, 3, 3, 5, 1}))
		return g, l, G.Nodes{x, gamma}
	}
	g, l, wrt := build()
	gs := mustGrad(t, l, wrt...)
	tape := make([]G.Value, 2)
	G.Read(gs[0], &tape[0])
	G.Read(gs[1], &tape[1])
	vm := G.NewTapeMachine(g)
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	vm.Close()

	g2, _, wrt2 := build()
	lm := G.NewLispMachine(g2)
	defer lm.Close()
	if err := lm.RunAll(); err != nil {
		t.Fatal(err)
	}
	for i, n := range wrt2 {
		gv, err := n.Grad()
		if err != nil {
			t.Fatal(err)
		}
		near(t, "lisp vs tape "+n.Name(), f64s(t, gv), f64s(t, tape[i]), 1e-14)
	}
}

func mustGrad(t *testing.T, cost *G.Node, wrt ...*G.Node) G.Nodes {
	t.Helper()
	gs, err := G.Grad(cost, wrt...)
	if err != nil {
		t.Fatal(err)
	}
	return gs
}
