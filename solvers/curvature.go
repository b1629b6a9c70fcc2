package solvers

import (
	"math"

	"github.com/pkg/errors"
	"gonum.org/v1/gonum/lapack"
	"gonum.org/v1/gonum/lapack/gonum"
	G "gorgonia.org/gorgonia"
)

// Curvature evaluates second-order information of a closure's loss at the current parameters, all
// parameters flattened in the order given (float32 and float64 parameters may be mixed; vectors are
// float64). It is the toolkit of the curvature-aware solvers (AdaHessian, OASIS) and of the sharpness and
// edge-of-stability experiments: Hessian-vector products, Hutchinson estimates of the diagonal and the
// trace, power iteration and Lanczos.
//
// Hessian-vector products are central finite differences of gradients (REFERENCE §1.7),
//
//	Hv ≈ (∇L(θ+εv) − ∇L(θ−εv)) / (2ε),   ε = c·(1+‖θ‖)/‖v‖,
//
// with c = EpsScale (default 1e-3 when every parameter is float64, 1e-2 when any is float32: the
// rounding error of a float32 gradient, divided by ε, would otherwise dominate). Error bound: with
// φ(t) = ∇L(θ+tv), Taylor's theorem with the symmetric difference gives
//
//	‖HVP − Hv‖ ≤ (ε²/6)·sup_{|t|≤ε} ‖∇⁴L(θ+tv)[v,v,v,·]‖ + δ/ε,
//
// where δ bounds the absolute error of one computed gradient (≈ unit roundoff × the sum of the absolute
// terms of the gradient). The truncation term involves the third derivative of the gradient (the fourth
// of L); it vanishes on quadratics, so there the product is exact up to the rounding term.
//
// Contract of every method: the closure is called at perturbed parameters (the parameter tensors are
// overwritten in place, the closure fills their gradients); on return — success or error — every
// parameter holds its original value bit for bit (restored by copy from a saved copy, not by
// subtraction) and every gradient is zero, as after a solver step. Buffers are grown once by Bind and
// reused: after the first call with a given size, HVP, Gradient, HutchinsonDiag/Trace and
// PowerIteration do not allocate (Lanczos allocates only when k or steps grow).
//
// Probe vectors are Rademacher (±1) signs drawn from a counter-based generator (SplitMix64) keyed by
// (seed, stream): the same seed and stream give the same probe, so estimates are reproducible and solvers
// only need to save a counter.
type Curvature struct {
	// EpsScale is c in ε = c(1+‖θ‖)/‖v‖; 0 selects the default (1e-3 float64, 1e-2 with float32).
	EpsScale float64

	reg     registry
	views   []view
	closure Closure
	n       int
	any32   bool
	x32     []float32 // saved parameters (float32 ones at their flat offsets)
	x64     []float64
	gp, gm  []float64
	z, hz   []float64
	evals   int64 // closure calls made

	lq             [][]float64 // Lanczos basis
	alpha, beta    []float64
	tz, work, tmpd []float64
	sub            []float64
}

// Bind resolves params (validated as a solver does: named, dense, float32/float64) and the closure for
// the following calls, growing the buffers if the flattened size grew. It changes nothing.
func (c *Curvature) Bind(params []G.ValueGrad, closure Closure) error {
	if closure == nil {
		return errors.New("curvature: nil closure")
	}
	if len(params) == 0 {
		return errors.New("curvature: no parameters")
	}
	views, err := c.reg.resolve(params)
	if err != nil {
		return errors.Wrap(err, "curvature")
	}
	n := 0
	c.any32 = false
	for i := range views {
		n += views[i].size()
		if views[i].w32 != nil {
			c.any32 = true
		}
	}
	c.views, c.closure, c.n = views, closure, n
	grow := func(b []float64) []float64 {
		if cap(b) < n {
			return make([]float64, n)
		}
		return b[:n]
	}
	c.x64, c.gp, c.gm, c.z, c.hz = grow(c.x64), grow(c.gp), grow(c.gm), grow(c.z), grow(c.hz)
	if c.any32 {
		if cap(c.x32) < n {
			c.x32 = make([]float32, n)
		}
		c.x32 = c.x32[:n]
	}
	return nil
}

// Dim returns the number of flattened parameters bound.
func (c *Curvature) Dim() int { return c.n }

// Evals returns the number of closure calls made so far (each HVP costs two).
func (c *Curvature) Evals() int64 { return c.evals }

func (c *Curvature) checkLen(name string, xs ...[]float64) error {
	if c.closure == nil {
		return errors.New("curvature: call Bind first")
	}
	for _, x := range xs {
		if len(x) != c.n {
			return errors.Errorf("curvature: %s: vector of length %d, the parameters have %d elements", name, len(x), c.n)
		}
	}
	return nil
}

// save copies the parameters aside and returns ‖θ‖.
func (c *Curvature) save() float64 {
	var ss float64
	off := 0
	for i := range c.views {
		v := &c.views[i]
		if v.w32 != nil {
			copy(c.x32[off:], v.w32)
			for _, x := range v.w32 {
				ss += float64(x) * float64(x)
			}
			off += len(v.w32)
		} else {
			copy(c.x64[off:], v.w64)
			for _, x := range v.w64 {
				ss += x * x
			}
			off += len(v.w64)
		}
	}
	return math.Sqrt(ss)
}

// restore writes the saved parameters back, bit for bit.
func (c *Curvature) restore() {
	off := 0
	for i := range c.views {
		v := &c.views[i]
		if v.w32 != nil {
			off += copy(v.w32, c.x32[off:])
		} else {
			off += copy(v.w64, c.x64[off:])
		}
	}
}

// setPoint writes θ_saved + s·d into the parameters (d nil: θ_saved); with x non-nil it writes x instead.
func (c *Curvature) setPoint(x, d []float64, s float64) {
	off := 0
	for i := range c.views {
		v := &c.views[i]
		if v.w32 != nil {
			for j := range v.w32 {
				switch {
				case x != nil:
					v.w32[j] = float32(x[off+j])
				case d != nil:
					v.w32[j] = float32(float64(c.x32[off+j]) + s*d[off+j])
				default:
					v.w32[j] = c.x32[off+j]
				}
			}
			off += len(v.w32)
		} else {
			for j := range v.w64 {
				switch {
				case x != nil:
					v.w64[j] = x[off+j]
				case d != nil:
					v.w64[j] = c.x64[off+j] + s*d[off+j]
				default:
					v.w64[j] = c.x64[off+j]
				}
			}
			off += len(v.w64)
		}
	}
}

// evalGrad calls the closure at the current parameters and gathers the gradient into out (float64).
func (c *Curvature) evalGrad(out []float64) (float64, error) {
	zeroGrads(c.views)
	c.evals++
	loss, err := c.closure()
	if err != nil {
		return 0, errors.Wrap(err, "curvature: closure")
	}
	off := 0
	for i := range c.views {
		v := &c.views[i]
		if v.g32 != nil {
			for j, g := range v.g32 {
				out[off+j] = float64(g)
			}
			off += len(v.g32)
		} else {
			off += copy(out[off:], v.g64)
		}
	}
	for i := 0; i < c.n; i++ {
		if !isFinite(out[i]) {
			return loss, errors.Errorf("curvature: gradient element %d is not finite", i)
		}
	}
	return loss, nil
}

// Gradient evaluates the loss and its gradient at the current parameters into g (length Dim()).
func (c *Curvature) Gradient(g []float64) (float64, error) {
	if err := c.checkLen("Gradient", g); err != nil {
		return 0, err
	}
	loss, err := c.evalGrad(g)
	zeroGrads(c.views)
	return loss, err
}

// GradientAt evaluates the loss and its gradient at the point x (flattened, rounded to each parameter's
// dtype) into g, then restores the parameters.
func (c *Curvature) GradientAt(x, g []float64) (float64, error) {
	if err := c.checkLen("GradientAt", x, g); err != nil {
		return 0, err
	}
	c.save()
	c.setPoint(x, nil, 0)
	loss, err := c.evalGrad(g)
	c.restore()
	zeroGrads(c.views)
	return loss, err
}

// Eps returns the finite-difference step HVP uses for a direction of norm vnorm at parameters of norm
// thetaNorm.
func (c *Curvature) Eps(thetaNorm, vnorm float64) float64 {
	s := c.EpsScale
	if s <= 0 {
		s = 1e-3
		if c.any32 {
			s = 1e-2
		}
	}
	return s * (1 + thetaNorm) / vnorm
}

// HVP writes the finite-difference Hessian-vector product H(θ)v into out (see the type's comment for
// the step and its error bound). v and out must not alias.
func (c *Curvature) HVP(v, out []float64) error {
	if err := c.checkLen("HVP", v, out); err != nil {
		return err
	}
	vn := curvNorm(v)
	if vn == 0 {
		clear(out)
		return nil
	}
	tn := c.save()
	eps := c.Eps(tn, vn)
	c.setPoint(nil, v, eps)
	_, err := c.evalGrad(c.gp)
	if err == nil {
		c.setPoint(nil, v, -eps)
		_, err = c.evalGrad(c.gm)
	}
	c.restore()
	zeroGrads(c.views)
	if err != nil {
		return err
	}
	inv := 1 / (2 * eps)
	for i := range out {
		out[i] = (c.gp[i] - c.gm[i]) * inv
	}
	return nil
}

func curvNorm(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x * x
	}
	return math.Sqrt(s)
}

func curvDot(a, b []float64) float64 {
	var s float64
	for i, x := range a {
		s += x * b[i]
	}
	return s
}

// splitMix64 advances *s and returns the next SplitMix64 output.
func splitMix64(s *uint64) uint64 {
	*s += 0x9E3779B97F4A7C15
	z := *s
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// RademacherProbe fills z with ±1 signs determined by (seed, stream).
func RademacherProbe(z []float64, seed, stream uint64) {
	s := seed ^ (stream+1)*0xD1B54A32D192ED03
	var bits uint64
	for i := range z {
		if i%64 == 0 {
			bits = splitMix64(&s)
		}
		if bits&1 != 0 {
			z[i] = 1
		} else {
			z[i] = -1
		}
		bits >>= 1
	}
}

// HutchinsonDiag estimates diag(H) as the mean of z ⊙ Hz over probes Rademacher probes (streams 0, 1, ...
// of seed) into diag. Element i of one probe has mean H_ii and variance Σ_{j≠i} H_ij², so the estimate's
// standard deviation is √(Σ_{j≠i} H_ij²/probes).
func (c *Curvature) HutchinsonDiag(probes int, seed uint64, diag []float64) error {
	if err := c.checkLen("HutchinsonDiag", diag); err != nil {
		return err
	}
	if probes < 1 {
		return errors.Errorf("curvature: %d probes; need at least 1", probes)
	}
	clear(diag)
	for p := 0; p < probes; p++ {
		RademacherProbe(c.z, seed, uint64(p))
		if err := c.HVP(c.z, c.hz); err != nil {
			return err
		}
		for i := range diag {
			diag[i] += c.z[i] * c.hz[i]
		}
	}
	for i := range diag {
		diag[i] /= float64(probes)
	}
	return nil
}

// HutchinsonTrace estimates tr(H) as the mean of zᵀHz over probes Rademacher probes (streams 0, 1, ... of
// seed). One probe has variance 2Σ_{i≠j} H_ij²; stderr is the sample standard deviation of the probes
// divided by √probes (0 for one probe).
func (c *Curvature) HutchinsonTrace(probes int, seed uint64) (trace, stderr float64, err error) {
	if err := c.checkLen("HutchinsonTrace"); err != nil {
		return 0, 0, err
	}
	if probes < 1 {
		return 0, 0, errors.Errorf("curvature: %d probes; need at least 1", probes)
	}
	var mean, m2 float64
	for p := 0; p < probes; p++ {
		RademacherProbe(c.z, seed, uint64(p))
		if err := c.HVP(c.z, c.hz); err != nil {
			return 0, 0, err
		}
		x := curvDot(c.z, c.hz)
		d := x - mean
		mean += d / float64(p+1)
		m2 += d * (x - mean)
	}
	if probes > 1 {
		stderr = math.Sqrt(m2 / float64(probes-1) / float64(probes))
	}
	return mean, stderr, nil
}

// PowerIteration estimates the eigenvalue of H of largest magnitude (the top eigenvalue when H is
// positive semi-definite, the sharpness) by power iteration from a Rademacher start (seed), stopping after
// maxIter products or when successive Rayleigh quotients differ by at most tol·|λ|. vec (length Dim(),
// may be nil) receives the unit eigenvector estimate. It returns λ and the iterations used.
func (c *Curvature) PowerIteration(maxIter int, tol float64, seed uint64, vec []float64) (lambda float64, iters int, err error) {
	if err := c.checkLen("PowerIteration"); err != nil {
		return 0, 0, err
	}
	if maxIter < 1 {
		return 0, 0, errors.New("curvature: power iteration needs maxIter >= 1")
	}
	v := c.tmpVec()
	RademacherProbe(v, seed, 1<<62)
	scale(v, 1/curvNorm(v))
	prev := math.NaN()
	for iters = 1; iters <= maxIter; iters++ {
		if err := c.HVP(v, c.hz); err != nil {
			return 0, iters, err
		}
		lambda = curvDot(v, c.hz)
		nw := curvNorm(c.hz)
		if nw == 0 {
			break
		}
		copy(v, c.hz)
		scale(v, 1/nw)
		if math.Abs(lambda-prev) <= tol*math.Abs(lambda) {
			break
		}
		prev = lambda
	}
	if iters > maxIter {
		iters = maxIter
	}
	if vec != nil {
		if len(vec) != c.n {
			return lambda, iters, errors.Errorf("curvature: eigenvector buffer of length %d, want %d", len(vec), c.n)
		}
		copy(vec, v)
	}
	return lambda, iters, nil
}

// tmpVec returns a Dim()-length scratch vector distinct from z, hz, gp, gm.
func (c *Curvature) tmpVec() []float64 {
	if cap(c.tmpd) < c.n {
		c.tmpd = make([]float64, c.n)
	}
	return c.tmpd[:c.n]
}

// Lanczos runs steps Lanczos iterations on H (with full reorthogonalisation against every previous basis
// vector, twice — classical Gram–Schmidt repeated — which is affordable at the sizes it is meant for and
// keeps the Ritz values free of ghost copies) from a Rademacher start (seed), solves the tridiagonal
// eigenproblem with LAPACK's dsteqr (gonum), and writes the k largest Ritz values in descending order into
// vals (length k). If vecs is not nil it must hold k vectors of length Dim(); they receive the matching
// Ritz vectors. steps is capped at Dim(); the iteration stops early at an invariant subspace (then fewer
// than k values may be meaningful: the remaining ones are NaN).
func (c *Curvature) Lanczos(k, steps int, seed uint64, vals []float64, vecs [][]float64) error {
	if err := c.checkLen("Lanczos"); err != nil {
		return err
	}
	if k < 1 || steps < k {
		return errors.Errorf("curvature: Lanczos needs 1 <= k <= steps, got k=%d steps=%d", k, steps)
	}
	if len(vals) != k || (vecs != nil && len(vecs) != k) {
		return errors.Errorf("curvature: Lanczos wants %d values (and vectors)", k)
	}
	for _, v := range vecs {
		if len(v) != c.n {
			return errors.Errorf("curvature: Ritz vector buffer of length %d, want %d", len(v), c.n)
		}
	}
	steps = min(steps, c.n)
	for len(c.lq) < steps+1 {
		c.lq = append(c.lq, nil)
	}
	for i := 0; i <= steps; i++ {
		if cap(c.lq[i]) < c.n {
			c.lq[i] = make([]float64, c.n)
		}
		c.lq[i] = c.lq[i][:c.n]
	}
	if cap(c.alpha) < steps {
		c.alpha, c.beta = make([]float64, steps), make([]float64, steps)
		c.tz, c.work, c.sub = make([]float64, steps*steps), make([]float64, max(1, 2*steps-2)), make([]float64, steps)
	}
	alpha, beta := c.alpha[:steps], c.beta[:steps]
	q0 := c.lq[0]
	RademacherProbe(q0, seed, 1<<61)
	scale(q0, 1/curvNorm(q0))
	m := 0
	for j := 0; j < steps; j++ {
		w := c.lq[j+1]
		if err := c.HVP(c.lq[j], w); err != nil {
			return err
		}
		alpha[j] = curvDot(c.lq[j], w)
		m = j + 1
		for pass := 0; pass < 2; pass++ {
			for i := 0; i <= j; i++ {
				h := curvDot(c.lq[i], w)
				for t := range w {
					w[t] -= h * c.lq[i][t]
				}
			}
		}
		b := curvNorm(w)
		beta[j] = b
		if j == steps-1 || b <= 1e-12*math.Abs(alpha[j])+1e-300 {
			break
		}
		scale(w, 1/b)
	}
	d := c.tmpVec()[:m]
	copy(d, alpha[:m])
	sub := c.sub[:max(0, m-1)]
	copy(sub, beta[:max(0, m-1)])
	z := c.tz[:m*m]
	if !(gonum.Implementation{}).Dsteqr(lapack.EVTridiag, m, d, sub, z, m, c.work[:max(1, 2*m-2)]) {
		return errors.New("curvature: tridiagonal eigensolver did not converge")
	}
	for r := 0; r < k; r++ {
		col := m - 1 - r
		if col < 0 {
			vals[r] = math.NaN()
			if vecs != nil {
				for t := range vecs[r] {
					vecs[r][t] = math.NaN()
				}
			}
			continue
		}
		vals[r] = d[col]
		if vecs != nil {
			y := vecs[r]
			clear(y)
			for i := 0; i < m; i++ {
				s := z[i*m+col]
				for t := range y {
					y[t] += s * c.lq[i][t]
				}
			}
		}
	}
	return nil
}
