package zeroth

import (
	"math"
	"sort"
	"unsafe"

	"github.com/pkg/errors"
)

// CBO is consensus-based optimization (Pinnau et al., "A consensus-based model for global optimization",
// 2017; anisotropic noise: Carrillo, Jin, Li, Zhu, "A consensus-based global optimization method for high
// dimensional machine learning problems", 2021; analysed in Riedl, Klock, Geldhauser, Fornasier,
// "Gradient is All You Need?", 2023). N particles X^j move towards the weighted consensus
//
//	ω_j = exp(−α(f(X^j) − min_k f(X^k))),   v_α = Σ_j ω_j X^j / Σ_j ω_j         (log-sum-exp stabilised)
//	X^j ← X^j − λΔt(X^j − v_α) + σ√Δt (X^j − v_α) ⊙ ξ^j                          (anisotropic)
//	X^j ← X^j − λΔt(X^j − v_α) + σ√Δt ‖X^j − v_α‖ ξ^j                            (isotropic)
//
// with ξ^j ~ N(0, I). α may grow geometrically (AlphaGrowth) up to AlphaMax. Each step costs N
// evaluations; the state is N×d particles (REFERENCE §3.6, §3.9).
type CBO struct {
	N           int     // particles (default 100)
	Lambda      float64 // drift λ (default 1)
	Sigma       float64 // noise σ (default 1 for anisotropic)
	Dt          float64 // step Δt (default 0.01)
	Alpha       float64 // initial weight exponent α (default 1e3)
	AlphaGrowth float64 // α ← min(α·AlphaGrowth, AlphaMax) after each step (default 1: constant)
	AlphaMax    float64 // cap on α (default 1e15)
	Isotropic   bool    // isotropic noise instead of the default anisotropic
	InitStd     float64 // particles start at x0 + InitStd·N(0, I) (default 1)
	Seed        uint64
}

// DefaultCBO returns the settings used in the tests: N = 100, λ = 1, σ = 1 (anisotropic), Δt = 0.01,
// α = 1e3. [The paper's sweeps cover σ ∈ [0.3, 1], Δt ∈ [0.01, 0.1], α ∈ [10, 1e5]; REFERENCE §3.6 marks
// these ranges "verify against the paper".]
func DefaultCBO() CBO {
	return CBO{N: 100, Lambda: 1, Sigma: 1, Dt: 0.01, Alpha: 1e3, AlphaGrowth: 1, AlphaMax: 1e15, InitStd: 1, Seed: 1}
}

// CBOResult is the outcome of CBO.Minimize.
type CBOResult struct {
	Consensus  []float64 // v_α after the last step
	F          float64   // f(v_α)
	Best       []float64 // best particle ever evaluated
	BestF      float64
	Evals      int64 // objective evaluations
	StateBytes int64 // particles, losses, consensus and best point
}

// Minimize runs steps CBO steps on f from particles spread around x0.
func (c CBO) Minimize(f func(x []float64) float64, x0 []float64, steps int) (CBOResult, error) {
	if c.N < 2 || !finitePos(c.Lambda) || !(c.Sigma >= 0) || !finitePos(c.Dt) || !finitePos(c.Alpha) || !(c.InitStd >= 0) {
		return CBOResult{}, errors.Errorf("zeroth.CBO: invalid settings %+v", c)
	}
	if c.AlphaGrowth < 1 {
		c.AlphaGrowth = 1
	}
	if c.AlphaMax < c.Alpha {
		c.AlphaMax = c.Alpha
	}
	d, n := len(x0), c.N
	r := newRNG(c.Seed)
	X := make([]float64, n*d)
	for j := 0; j < n; j++ {
		for i := 0; i < d; i++ {
			X[j*d+i] = x0[i] + c.InitStd*r.norm()
		}
	}
	L := make([]float64, n)
	v := make([]float64, d)
	res := CBOResult{Best: make([]float64, d), BestF: math.Inf(1)}
	alpha := c.Alpha
	sq := math.Sqrt(c.Dt)
	for t := 0; t < steps; t++ {
		lmin := math.Inf(1)
		for j := 0; j < n; j++ {
			L[j] = f(X[j*d : (j+1)*d])
			res.Evals++
			if L[j] < lmin {
				lmin = L[j]
			}
			if L[j] < res.BestF {
				res.BestF = L[j]
				copy(res.Best, X[j*d:(j+1)*d])
			}
		}
		clear(v)
		wsum := 0.0
		for j := 0; j < n; j++ {
			w := math.Exp(-alpha * (L[j] - lmin)) // ≤ 1, and = 1 at the minimiser: no overflow
			wsum += w
			for i := 0; i < d; i++ {
				v[i] += w * X[j*d+i]
			}
		}
		for i := range v {
			v[i] /= wsum
		}
		for j := 0; j < n; j++ {
			x := X[j*d : (j+1)*d]
			nrm := 0.0
			if c.Isotropic {
				for i := range x {
					nrm += (x[i] - v[i]) * (x[i] - v[i])
				}
				nrm = math.Sqrt(nrm)
			}
			for i := range x {
				diff := x[i] - v[i]
				scale := diff
				if c.Isotropic {
					scale = nrm
				}
				x[i] += -c.Lambda*c.Dt*diff + c.Sigma*sq*scale*r.norm()
			}
		}
		alpha = math.Min(alpha*c.AlphaGrowth, c.AlphaMax)
	}
	res.Consensus = v
	res.F = f(v)
	res.Evals++
	res.StateBytes = int64(len(X)+len(L)+len(v)+len(res.Best)) * 8
	return res, nil
}

// ES is the antithetic evolution-strategies gradient estimator of Salimans et al. ("Evolution Strategies
// as a Scalable Alternative to Reinforcement Learning", 2017, Alg. 2 with mirrored sampling and fitness
// shaping): N = 2·pairs evaluations at θ ± σε_i and
//
//	ĝ = (1/(Nσ)) Σ_{i ≤ N/2} (F̃(θ+σε_i) − F̃(θ−σε_i)) ε_i,   F̃ = centred rank of the loss, rank/(N−1) − ½,
//
// an estimate (up to the rank transform's monotone rescaling) of the gradient of the Gaussian-smoothed
// loss; feed it to SGD or Adam and step θ ← θ − ηĝ. The ε_i are regenerated from the step seed with the
// counter-based generator (never stored); state: N losses and ranks plus one point (REFERENCE §3.7).
type ES struct {
	Sigma  float64
	pairs  int
	seed   uint64
	steps  int64
	evals  int64
	losses []float64
	order  []int
	shaped []float64
	buf    []float64
}

// NewES returns an antithetic ES estimator with N = 2·pairs evaluations per estimate and noise σ.
func NewES(pairs int, sigma float64, seed uint64) (*ES, error) {
	if pairs < 1 || !finitePos(sigma) {
		return nil, errors.Errorf("zeroth.ES: need pairs ≥ 1 and σ > 0 (got %d, %v)", pairs, sigma)
	}
	n := 2 * pairs
	return &ES{Sigma: sigma, pairs: pairs, seed: seed, losses: make([]float64, n), order: make([]int, n), shaped: make([]float64, n)}, nil
}

// Forwards returns the number of objective evaluations so far.
func (e *ES) Forwards() int64 { return e.evals }

// StateBytes returns the bytes held: losses, ranks, shaped fitness and one point buffer.
func (e *ES) StateBytes() int64 {
	return int64(unsafe.Sizeof(*e)) + int64(cap(e.losses)+cap(e.order)+cap(e.shaped)+cap(e.buf))*8
}

// Estimate fills g with ĝ at x and returns the mean loss of the N evaluations. x is not modified.
func (e *ES) Estimate(f func(x []float64) float64, x, g []float64) (float64, error) {
	d := len(x)
	if len(g) != d {
		return 0, errors.Errorf("zeroth.ES: len(g) = %d, len(x) = %d", len(g), d)
	}
	if cap(e.buf) < d {
		e.buf = make([]float64, d)
	}
	buf := e.buf[:d]
	step := mix64(e.seed + uint64(e.steps+1)*golden)
	n := 2 * e.pairs
	mean := 0.0
	for i := 0; i < e.pairs; i++ {
		base := streamBase(step, uint64(i+1))
		for s := 0; s < 2; s++ {
			sgn := 1 - 2*float64(s)
			for j := range buf {
				buf[j] = x[j] + sgn*e.Sigma*zAt(base, j, Gaussian)
			}
			l := f(buf)
			if math.IsNaN(l) {
				return 0, errors.New("zeroth.ES: objective returned NaN")
			}
			e.losses[2*i+s] = l
			mean += l
		}
	}
	e.evals += int64(n)
	for i := range e.order {
		e.order[i] = i
	}
	sort.Slice(e.order, func(a, b int) bool { return e.losses[e.order[a]] < e.losses[e.order[b]] })
	for r, i := range e.order {
		e.shaped[i] = float64(r)/float64(n-1) - 0.5
	}
	clear(g)
	for i := 0; i < e.pairs; i++ {
		base := streamBase(step, uint64(i+1))
		c := (e.shaped[2*i] - e.shaped[2*i+1]) / (float64(n) * e.Sigma)
		for j := range g {
			g[j] += c * zAt(base, j, Gaussian)
		}
	}
	e.steps++
	return mean / float64(n), nil
}
