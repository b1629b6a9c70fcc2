package zeroth

import (
	"math"
	"testing"

	G "gorgonia.org/gorgonia"

	"github.com/gradlab/gradlab/solvers"
)

// quad is f = ½ Σ a_i (θ_i − c_i)² over the concatenation of float64 params.
type quad struct {
	a, c []float64
	ps   []*solvers.Param
}

func newQuad(d int, seed uint64) *quad {
	r := newRNG(seed)
	q := &quad{a: make([]float64, d), c: make([]float64, d)}
	x := make([]float64, d)
	for i := range q.a {
		q.a[i] = 0.5 + 1.5*r.float()
		q.c[i] = r.norm()
		x[i] = r.norm()
	}
	h := d / 2 // two tensors, to exercise the multi-parameter path
	q.ps = []*solvers.Param{solvers.NewParamFrom("w.b", []int{d - h}, x[h:]), solvers.NewParamFrom("w.a", []int{h}, x[:h])}
	return q
}

func (q *quad) x() []float64 {
	return append(append([]float64(nil), q.ps[1].Tensor().Float64s()...), q.ps[0].Tensor().Float64s()...)
}

func (q *quad) loss() (float64, error) {
	s, i := 0.0, 0
	for _, p := range []*solvers.Param{q.ps[1], q.ps[0]} {
		for _, w := range p.Tensor().Float64s() {
			d := w - q.c[i]
			s += 0.5 * q.a[i] * d * d
			i++
		}
	}
	return s, nil
}

func (q *quad) grad() []float64 {
	x := q.x()
	g := make([]float64, len(x))
	for i := range x {
		g[i] = q.a[i] * (x[i] - q.c[i])
	}
	return g
}

func (q *quad) estGrad() []float64 {
	return append(append([]float64(nil), q.ps[1].GradTensor().Float64s()...), q.ps[0].GradTensor().Float64s()...)
}

func dot(a, b []float64) float64 {
	s := 0.0
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// TestSPSAGaussianUnbiasedVariance checks the two-point Gaussian SPSA estimate against the true gradient
// with bounds derived from its variance.
//
// Derivation. On a quadratic, f(θ+εz) − f(θ−εz) = 2ε gᵀz exactly (the even terms cancel), so
// proj = gᵀz and ĝ = (1/n) Σ_i (gᵀz_i) z_i with z_i ~ N(0, I_d) independent. Let X = (gᵀz)z. Rotating so
// that g = ‖g‖e_1: E[X] = ‖g‖ E[z_1 z] = g, and E[XXᵀ] = ‖g‖² E[z_1² zzᵀ] = ‖g‖² diag(3, 1, ..., 1)
// (E z_1⁴ = 3), so Cov X = ‖g‖²(I + e_1e_1ᵀ): variance 2‖g‖² along g and ‖g‖² in each of the d−1
// orthogonal directions. Hence, with e = ĝ − g,
//
//	E‖ĝ‖² = ‖g‖² + tr Cov/n = (1 + (d+1)/n)‖g‖²   (one direction: E‖X‖² = (d+2)‖g‖²),
//
// and by the CLT (n large) the radial error ρ = gᵀe/‖g‖² ≈ N(0, 2/n) and the orthogonal part
// T = n‖e_⊥‖²/‖g‖² ≈ χ²_{d−1} (mean d−1, sd √(2(d−1))). With these,
//
//	tan∠(ĝ, g) = ‖e_⊥‖/(‖g‖(1+ρ)),   ‖ĝ‖/‖g‖ = √((1+ρ)² + T/n),
//
// so 4-sigma bounds on ρ and T give bounds on the cosine and the norm ratio. (For Rademacher z,
// E‖X‖² = d‖g‖²: the variance is (d−1)‖g‖², smaller by 2‖g‖²; tested for unbiasedness only.)
func TestSPSAGaussianUnbiasedVariance(t *testing.T) {
	const d, n = 50, 10000
	q := newQuad(d, 7)
	est, err := NewEstimator(WithDirections(n), WithEps(1e-3), WithSeed(11))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := est.Estimate(solvers.Params(q.ps...), q.loss); err != nil {
		t.Fatal(err)
	}
	g, gh := q.grad(), q.estGrad()
	gg := dot(g, g)
	rho := (dot(g, gh) - gg) / gg
	ePerp2 := 0.0
	for i := range g {
		e := gh[i] - g[i] - rho*g[i]
		ePerp2 += e * e
	}
	T := n * ePerp2 / gg
	zRho := rho / math.Sqrt(2.0/n)
	zT := (T - (d - 1)) / math.Sqrt(2*(d-1))
	cos := dot(g, gh) / math.Sqrt(gg*dot(gh, gh))
	ratio := math.Sqrt(dot(gh, gh) / gg)
	rhoMax, tMax := 4*math.Sqrt(2.0/n), (d-1)+4*math.Sqrt(2*(d-1))
	cosMin := 1 / math.Sqrt(1+tMax/n/((1-rhoMax)*(1-rhoMax)))
	ratioLo, ratioHi := 1-rhoMax, math.Sqrt((1+rhoMax)*(1+rhoMax)+tMax/n)
	t.Logf("d=%d n=%d: cos=%.5f (bound ≥ %.5f, expected ≈ %.5f), ‖ĝ‖/‖g‖=%.5f (bound [%.4f, %.4f], E‖ĝ‖²/‖g‖² = %.4f), radial z=%.2f, χ²_{d-1} z=%.2f, forwards=%d",
		d, n, cos, cosMin, 1/math.Sqrt(1+float64(d-1)/n), ratio, ratioLo, ratioHi, 1+float64(d+1)/n, zRho, zT, est.Forwards())
	if math.Abs(zRho) > 4 || math.Abs(zT) > 4 {
		t.Errorf("standardised errors out of 4σ: radial %.2f, orthogonal %.2f", zRho, zT)
	}
	if cos < cosMin || ratio < ratioLo || ratio > ratioHi {
		t.Errorf("cos %.5f (min %.5f) or norm ratio %.5f outside [%.4f, %.4f]", cos, cosMin, ratio, ratioLo, ratioHi)
	}
	if est.Forwards() != 2*n {
		t.Errorf("forwards = %d, want %d", est.Forwards(), 2*n)
	}

	// Rademacher: unbiased too. Its radial variance per direction is (E(gᵀz)⁴ − ‖g‖⁴)/‖g‖² =
	// 2‖g‖² − 2Σg_i⁴/‖g‖² ≤ 2‖g‖², so the Gaussian 4σ bound on the radial error is conservative.
	q2 := newQuad(d, 7)
	er, _ := NewEstimator(WithDirections(n), WithDist(Rademacher), WithSeed(12))
	if _, err := er.Estimate(solvers.Params(q2.ps...), q2.loss); err != nil {
		t.Fatal(err)
	}
	g2 := q2.estGrad()
	rho2 := (dot(g, g2) - gg) / gg
	if math.Abs(rho2)/math.Sqrt(2.0/n) > 4 {
		t.Errorf("Rademacher radial error %.4f beyond 4σ", rho2)
	}
}

// TestSeedTrick: the perturbation is a pure function of (seed, name, index): regenerated twice, in another
// parameter order, it is bit-identical, and the estimator's perturbation is exactly FillDirection.
func TestSeedTrick(t *testing.T) {
	e, _ := NewEstimator(WithSeed(3), WithDirections(2))
	a := solvers.NewParamFrom("a", []int{7}, make([]float64, 7))
	b := solvers.NewParamFrom("b", []int{5}, make([]float32, 5))
	if err := e.resolve(solvers.Params(b, a), true); err != nil {
		t.Fatal(err)
	}
	e.begin()
	e.perturb(1, 1) // 0 + 1·z = z exactly
	z := make([]float64, 7)
	FillDirection(z, e.DirectionSeed(0, 1), "a", Gaussian)
	for j, w := range a.Tensor().Float64s() {
		if w != z[j] {
			t.Fatalf("a[%d] = %v, FillDirection gives %v", j, w, z[j])
		}
	}
	zb := make([]float64, 5)
	FillDirection(zb, e.DirectionSeed(0, 1), "b", Gaussian)
	for j, w := range b.Tensor().Float32s() {
		if w != float32(zb[j]) {
			t.Fatalf("b[%d] = %v, FillDirection gives %v", j, w, float32(zb[j]))
		}
	}
	z2 := make([]float64, 7)
	FillDirection(z2, e.DirectionSeed(0, 1), "a", Gaussian)
	for j := range z {
		if z[j] != z2[j] {
			t.Fatal("regeneration is not bit-identical")
		}
	}
	// Order independence: the same estimate, bit for bit, whatever order the params come in.
	q1, q2 := newQuad(9, 5), newQuad(9, 5)
	e1, _ := NewEstimator(WithSeed(8), WithDirections(3))
	e2, _ := NewEstimator(WithSeed(8), WithDirections(3))
	e1.Estimate(solvers.Params(q1.ps[0], q1.ps[1]), q1.loss)
	e2.Estimate(solvers.Params(q2.ps[1], q2.ps[0]), q2.loss)
	g1, g2 := q1.estGrad(), q2.estGrad()
	for i := range g1 {
		if g1[i] != g2[i] {
			t.Fatalf("estimate depends on parameter order at %d: %v vs %v", i, g1[i], g2[i])
		}
	}
}

func ulp32(x float32) float64 {
	x = float32(math.Abs(float64(x)))
	return float64(math.Nextafter32(x, float32(math.Inf(1))) - x)
}

func ulp64(x float64) float64 {
	x = math.Abs(x)
	return math.Nextafter(x, math.Inf(1)) - x
}

// TestRestoreULPs: perturb / evaluate / restore by subtraction (+εz, −2εz, +εz, as MeZO) returns every
// weight to within 2 ulps of the largest intermediate value |θ| + 2ε|z|. Exact restoration would need a
// copy of θ (P extra values), which is what MeZO exists to avoid; we accept the drift, as MeZO does.
func TestRestoreULPs(t *testing.T) {
	const d = 4000
	r := newRNG(99)
	x64 := make([]float64, d)
	x32 := make([]float32, d)
	for i := range x64 {
		x64[i] = 2*r.float() - 1
		x32[i] = float32(x64[i])
	}
	p64 := solvers.NewParamFrom("p64", []int{d}, x64)
	p32 := solvers.NewParamFrom("p32", []int{d}, x32)
	e, _ := NewEstimator(WithSeed(5), WithEps(1e-3))
	obj := func() (float64, error) { return p64.Tensor().Float64s()[0] + float64(p32.Tensor().Float32s()[1]), nil }
	if _, err := e.Estimate(solvers.Params(p64, p32), obj); err != nil {
		t.Fatal(err)
	}
	z64, z32 := make([]float64, d), make([]float64, d)
	FillDirection(z64, e.DirectionSeed(0, 0), "p64", Gaussian)
	FillDirection(z32, e.DirectionSeed(0, 0), "p32", Gaussian)
	exact64, exact32, worst64, worst32 := 0, 0, 0.0, 0.0
	for i, w := range p64.Tensor().Float64s() {
		diff := math.Abs(w - x64[i])
		u := diff / ulp64(math.Abs(x64[i])+2e-3*math.Abs(z64[i]))
		worst64 = math.Max(worst64, u)
		if diff == 0 {
			exact64++
		}
	}
	for i, w := range p32.Tensor().Float32s() {
		diff := math.Abs(float64(w - x32[i]))
		u := diff / ulp32(float32(math.Abs(float64(x32[i]))+2e-3*math.Abs(z32[i])))
		worst32 = math.Max(worst32, u)
		if diff == 0 {
			exact32++
		}
	}
	t.Logf("restore: float64 %d/%d bit-exact, worst %.1f ulp; float32 %d/%d bit-exact, worst %.1f ulp", exact64, d, worst64, exact32, d, worst32)
	if worst64 > 2 || worst32 > 2 {
		t.Errorf("restoration drift %.1f / %.1f ulp exceeds 2", worst64, worst32)
	}
}

// leastSquares builds ½·mean((Ax − b)²) over one parameter of dtype T; b = A x* + small noise.
func leastSquares[T solvers.Float](m, d int, seed uint64) (*solvers.Param, Objective, float64) {
	r := newRNG(seed)
	A := make([]float64, m*d)
	b := make([]float64, m)
	xs := make([]float64, d)
	for i := range xs {
		xs[i] = r.norm()
	}
	for i := 0; i < m; i++ {
		for j := 0; j < d; j++ {
			A[i*d+j] = r.norm()
			b[i] += A[i*d+j] * xs[j]
		}
		b[i] += 0.01 * r.norm()
	}
	x0 := make([]T, d)
	p := solvers.NewParamFrom("weight", []int{d}, x0)
	var w []T
	if pw, ok := p.Tensor().Data().([]T); ok {
		w = pw
	}
	obj := func() (float64, error) {
		s := 0.0
		for i := 0; i < m; i++ {
			res := -b[i]
			row := A[i*d : (i+1)*d]
			for j, wj := range w {
				res += row[j] * float64(wj)
			}
			s += res * res
		}
		return 0.5 * s / float64(m), nil
	}
	l0, _ := obj()
	return p, obj, l0
}

func TestMeZOLeastSquares(t *testing.T) {
	for _, dt := range []string{"float64", "float32"} {
		var p *solvers.Param
		var obj Objective
		var l0 float64
		if dt == "float64" {
			p, obj, l0 = leastSquares[float64](60, 12, 1)
		} else {
			p, obj, l0 = leastSquares[float32](60, 12, 1)
		}
		m, err := NewMeZO(WithLR(0.02), WithEps(1e-3), WithSeed(2))
		if err != nil {
			t.Fatal(err)
		}
		params := solvers.Params(p)
		for i := 0; i < 3000; i++ {
			if _, err := m.Step(params, obj); err != nil {
				t.Fatal(err)
			}
		}
		l1, _ := obj()
		t.Logf("%s MeZO least squares: loss %.4g -> %.4g after 3000 steps (%d forwards), StateBytes %d", dt, l0, l1, m.Forwards(), m.StateBytes())
		if !(l1 < 0.01*l0) {
			t.Errorf("%s: loss %.4g did not fall below 1%% of %.4g", dt, l1, l0)
		}
		allocs := testing.AllocsPerRun(200, func() { m.Step(params, obj) })
		if allocs != 0 {
			t.Errorf("%s: %v allocations per MeZO step, want 0", dt, allocs)
		}
	}
	// O(1): the held bytes do not depend on the number of weights.
	small, _, _ := leastSquares[float64](2, 10, 3)
	big := solvers.NewParamFrom("weight", []int{100000}, make([]float64, 100000))
	ms, _ := NewMeZO(WithLR(1e-3))
	mb, _ := NewMeZO(WithLR(1e-3))
	zero := func() (float64, error) { return 0, nil }
	ms.Step(solvers.Params(small), zero)
	mb.Step(solvers.Params(big), zero)
	if ms.StateBytes() != mb.StateBytes() {
		t.Errorf("StateBytes depends on the parameter size: %d vs %d", ms.StateBytes(), mb.StateBytes())
	}
}

// TestEstimatorWithSolvers: ZO-AdamW (ĝ fed to gradlab's AdamW) converges on the quadratic, float64 and float32;
// ZO-SGD-MMT (momentum SGD) too.
func TestEstimatorWithSolvers(t *testing.T) {
	for _, tc := range []struct {
		kind string
		opts []solvers.Option
	}{
		{"adamw", []solvers.Option{solvers.WithLR(0.05), solvers.WithWeightDecay(0)}},
		{"sgd", []solvers.Option{solvers.WithLR(0.02), solvers.WithMomentum(0.9)}},
	} {
		q := newQuad(10, 21)
		opt, err := solvers.New(tc.kind, tc.opts...)
		if err != nil {
			t.Fatal(err)
		}
		est, _ := NewEstimator(WithDirections(4), WithSeed(4))
		l0, _ := q.loss()
		params := solvers.Params(q.ps...)
		for i := 0; i < 1500; i++ {
			if _, err := est.Estimate(params, q.loss); err != nil {
				t.Fatal(err)
			}
			if err := opt.Step(params); err != nil {
				t.Fatal(err)
			}
		}
		l1, _ := q.loss()
		t.Logf("ZO + %s on the quadratic (d=10, n=4): loss %.4g -> %.4g", tc.kind, l0, l1)
		if !(l1 < 1e-3*l0) {
			t.Errorf("ZO + %s: loss %.4g not below 1e-3 × %.4g", tc.kind, l1, l0)
		}
	}
	// float32 with AdamW
	p, obj, l0 := leastSquares[float32](40, 8, 9)
	opt, _ := solvers.New("adamw", solvers.WithLR(0.02), solvers.WithWeightDecay(0))
	est, _ := NewEstimator(WithDirections(2), WithEps(1e-2))
	params := solvers.Params(p)
	for i := 0; i < 1500; i++ {
		est.Estimate(params, obj)
		opt.Step(params)
	}
	l1, _ := obj()
	t.Logf("ZO + adamw float32 least squares: %.4g -> %.4g", l0, l1)
	if !(l1 < 1e-2*l0) {
		t.Errorf("float32 ZO-AdamW: %.4g not below 1%% of %.4g", l1, l0)
	}
}

func TestVariants(t *testing.T) {
	// ZO-SGD-Sign decreases the least-squares loss.
	p, obj, l0 := leastSquares[float64](60, 12, 1)
	m, _ := NewMeZO(WithLR(0.005), WithSign(true), WithSeed(3))
	for i := 0; i < 2000; i++ {
		m.Step(solvers.Params(p), obj)
	}
	l1, _ := obj()
	t.Logf("ZO-SGD-Sign: %.4g -> %.4g", l0, l1)
	if !(l1 < 0.05*l0) {
		t.Errorf("sign variant: %.4g not below 5%% of %.4g", l1, l0)
	}

	// ZO-SGD-Cons never increases the loss (deterministic objective) and costs 2n+3 forwards.
	p, obj, l0 = leastSquares[float64](60, 12, 1)
	m, _ = NewMeZO(WithLR(0.05), WithConservative(true), WithSeed(3))
	prev := l0
	for i := 0; i < 300; i++ {
		kept, err := m.Step(solvers.Params(p), obj)
		if err != nil {
			t.Fatal(err)
		}
		now, _ := obj()
		if now > prev+1e-12*prev || math.Abs(now-kept) > 1e-9*now {
			t.Fatalf("conservative step %d: loss %.10g after %.10g (reported %.10g)", i, now, prev, kept)
		}
		prev = now
	}
	t.Logf("ZO-SGD-Cons: %.4g -> %.4g, monotone, %d forwards in 300 steps", l0, prev, m.Forwards())
	if m.Forwards() != 300*5 {
		t.Errorf("conservative forwards = %d, want %d", m.Forwards(), 300*5)
	}

	// Sparse: about a fraction s of the entries are untouched by a step; the mask is resampled every k steps.
	const d = 20000
	sp := solvers.NewParamFrom("w", []int{d}, make([]float64, d))
	lin := func() (float64, error) {
		s := 0.0
		for i, w := range sp.Tensor().Float64s() {
			s += float64(i%7-3) * w
		}
		return s, nil
	}
	m, _ = NewMeZO(WithLR(1), WithSparsity(0.8, 2), WithSeed(1))
	masks := make([][]bool, 3)
	for s := 0; s < 3; s++ {
		before := append([]float64(nil), sp.Tensor().Float64s()...)
		m.Step(solvers.Params(sp), lin)
		masks[s] = make([]bool, d)
		moved := 0
		for i, w := range sp.Tensor().Float64s() {
			if w != before[i] {
				masks[s][i] = true
				moved++
			}
		}
		frac := float64(moved) / d
		// Binomial(d, 0.2): sd = √(d·0.2·0.8)/d ≈ 0.0028
		if math.Abs(frac-0.2) > 4*math.Sqrt(0.2*0.8/d) {
			t.Errorf("sparse step %d moved %.4f of the entries, want 0.2", s, frac)
		}
	}
	same01, same12 := true, true
	for i := range masks[0] {
		same01 = same01 && masks[0][i] == masks[1][i]
		same12 = same12 && masks[1][i] == masks[2][i]
	}
	if !same01 || same12 {
		t.Errorf("mask resampling every 2 steps: steps 0,1 same=%v (want true), steps 1,2 same=%v (want false)", same01, same12)
	}

	// Block-wise: one tensor per step, cycling in name order; the other gradient is zero.
	q := newQuad(10, 3)
	e, _ := NewEstimator(WithBlockWise(true))
	e.Estimate(solvers.Params(q.ps...), q.loss)
	if nz(q.ps[1].GradTensor().Float64s()) == 0 || nz(q.ps[0].GradTensor().Float64s()) != 0 {
		t.Error("block-wise step 0 should fill w.a only")
	}
	e.Estimate(solvers.Params(q.ps...), q.loss)
	if nz(q.ps[0].GradTensor().Float64s()) == 0 || nz(q.ps[1].GradTensor().Float64s()) != 0 {
		t.Error("block-wise step 1 should fill w.b only")
	}

	// One-sided: n+1 forwards.
	e, _ = NewEstimator(WithOneSided(true), WithDirections(5))
	e.Estimate(solvers.Params(q.ps...), q.loss)
	if e.Forwards() != 6 {
		t.Errorf("one-sided forwards = %d, want 6", e.Forwards())
	}

	// Weight decay only on weights, as MeZO's zo_update: with a zero objective, the bias is unchanged.
	w := solvers.NewParamFrom("layer.weight", []int{3}, []float64{1, 1, 1})
	bias := solvers.NewParamFrom("layer.bias", []int{3}, []float64{1, 1, 1})
	m, _ = NewMeZO(WithLR(0.1), WithWeightDecay(0.5))
	m.Step(solvers.Params(w, bias), func() (float64, error) { return 0, nil })
	if w.Tensor().Float64s()[0] != 0.95 || bias.Tensor().Float64s()[0] != 1 {
		t.Errorf("decay: weight %v (want 0.95), bias %v (want 1)", w.Tensor().Float64s()[0], bias.Tensor().Float64s()[0])
	}
}

func nz(x []float64) int {
	n := 0
	for _, v := range x {
		if v != 0 {
			n++
		}
	}
	return n
}

func TestOptionsAndErrors(t *testing.T) {
	bad := []Option{WithEps(0), WithEps(math.NaN()), WithDirections(0), WithSparsity(1, 1), WithSparsity(0.5, 0), WithLR(-1), WithWeightDecay(-1), WithDist(7)}
	for i, o := range bad {
		if _, err := NewMeZO(o); err == nil {
			t.Errorf("bad option %d accepted", i)
		}
	}
	if _, err := NewMeZO(WithConservative(true), WithWeightDecay(0.1)); err == nil {
		t.Error("conservative + weight decay accepted")
	}
	if _, err := NewEstimator(WithLR(0.1)); err == nil {
		t.Error("Estimator accepted WithLR")
	}
	// An objective error leaves the weights where they were (up to rounding) and the step count unchanged.
	p := solvers.NewParamFrom("w", []int{4}, []float64{1, 2, 3, 4})
	m, _ := NewMeZO(WithLR(0.1))
	calls := 0
	_, err := m.Step([]G.ValueGrad{p}, func() (float64, error) {
		calls++
		if calls == 2 {
			return math.NaN(), nil
		}
		return 1, nil
	})
	if err == nil || m.StepCount() != 0 {
		t.Errorf("NaN loss: err %v, steps %d", err, m.StepCount())
	}
	for i, w := range p.Tensor().Float64s() {
		if math.Abs(w-float64(i+1)) > 1e-12 {
			t.Errorf("w[%d] = %v after a failed step", i, w)
		}
	}
	dup := solvers.NewParamFrom("w", []int{1}, []float64{0})
	if _, err := m.Step(solvers.Params(p, dup), func() (float64, error) { return 0, nil }); err == nil {
		t.Error("duplicate names accepted")
	}
	// Spall's gains plug in as schedules.
	g := NewSpallGains(0.1, 10, 0.01)
	sm, err := NewMeZO(WithSchedule(g.LR()), WithEpsSchedule(g.Eps()), WithDist(Rademacher))
	if err != nil || math.Abs(sm.LR()-0.1/math.Pow(11, 0.602)) > 1e-15 {
		t.Errorf("Spall gains: err %v lr %v", err, sm.LR())
	}
}
