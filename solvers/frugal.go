package solvers

import (
	"math"

	"github.com/pkg/errors"
)

// FRUGAL is the FRUGAL solver; see NewFRUGAL.
type FRUGAL struct{ *mxSolver }

// NewFRUGAL returns FRUGAL (Zmushko, Beznosikov, Takáč & Horváth, "FRUGAL: Memory-Efficient
// Optimization by Reducing State Overhead for Scalable Training") in its AdamW + signSGD instance with
// the SVD projection — the authors' GaloreAdamW (code: philip-zmushko/FRUGAL, read through its fork
// hungquangbui02022003/FRUGAL: frugal/proj_optimizer_templates.py GaloreOptimizer, frugal/adamw.py,
// frugal/galore_projector.py with proj_type "svd", proj_side "std"). For a 2-D parameter with gradient
// G, with k the state-full step count since the last projector refresh:
//
//	if k mod update_gap = 0:  P ← the r = round(ρ·min(rows, cols)) leading singular vectors of G on the
//	                          smaller side (GaLore's layout mapping, see galore.go); with reset_statistics
//	                          the moments are zeroed and k restarts at 0
//	θ ← θ·(1 − η·λ)                                                  (decoupled, before the update)
//	k ← k + 1;  R = Pᵀ·G (or G·Q);  m, v Adam moments of R
//	Δ = −(η·s/(1−β1ᵏ)) · m/(√v/√(1−β2ᵏ) + ε)                        (torch.optim.AdamW's form)
//	θ ← θ + P·Δ (or Δ·Qᵀ) − η·s·s_free·sign(G − P·R)                (state-free signSGD on the complement)
//
// where s = proj_params_lr_scale and s_free = inactive_lr_scale (the reference's defaults 1 and 1: the
// lr ratio between the two parts is 1 in pre-training; the authors use 0.1 for fine-tuning). Parameters
// that are not 2-D are "regular" parameters: plain AdamW of the same form with the step count st.step.
// Note that sign(G − P·R) is ±1 wherever the residual is not exactly 0, including round-off inside the
// subspace, as in the reference.
//
// Only the SVD projection is implemented (the reference's "random", "randperm", RandK coordinate and
// BAdam-style block projections are not). ρ = 0 leaves every coordinate to signSGD; ρ = 1 is AdamW in a
// rotated basis.
//
// Hyperparameters (defaults, the reference's): lr (1e-3), beta1 (0.9), beta2 (0.999), eps (1e-8),
// weight_decay (0.01), density ρ (0.25), update_gap (200), proj_params_lr_scale (1),
// inactive_lr_scale (1), reset_statistics (true), channel_first (false).
//
// State per rows×cols matrix (r as above): the projector (rows·r if rows ≤ cols, else cols·r), two
// moments of r·cols (resp. rows·r) and one float64 scalar (k); 2P for other parameters. Steps without a
// refresh allocate nothing; a refresh allocates the SVD's work.
func NewFRUGAL(opts ...Option) (*FRUGAL, error) {
	s, err := newMxSolver("frugal", []hyperSpec{
		lrSpec(1e-3),
		betaSpec("beta1", 0.9),
		betaSpec("beta2", 0.999),
		epsSpec(1e-8),
		wdSpec(0.01),
		{key: "density", def: 0.25, check: closedUnit},
		{key: "update_gap", def: 200, check: positiveInt},
		{key: "proj_params_lr_scale", def: 1, check: nonNegative},
		{key: "inactive_lr_scale", def: 1, check: nonNegative},
		flagSpec("reset_statistics", true),
		flagSpec("channel_first", false),
	}, opts, newFrugalAlgo)
	if err != nil {
		return nil, err
	}
	return &FRUGAL{s}, nil
}

func init() {
	register("frugal", func(opts ...Option) (Solver, error) { return NewFRUGAL(opts...) })
}

// RefreshCount returns how many projectors (SVDs) the solver has computed since it was built.
func (s *FRUGAL) RefreshCount() int64 { return s.algo.(*frugalAlgo).refreshes }

type frugalAlgo struct {
	b1, b2, eps, density, projScale, freeScale float64
	gap                                        int64
	reset, channelFirst                        bool
	refreshes                                  int64
	s32                                        galoreScratch[float32]
	s64                                        galoreScratch[float64]
}

func newFrugalAlgo(c *config) (mxAlgo, error) {
	a := &frugalAlgo{b1: c.f("beta1"), b2: c.f("beta2"), eps: c.f("eps"), density: c.f("density"),
		projScale: c.f("proj_params_lr_scale"), freeScale: c.f("inactive_lr_scale"), gap: int64(c.f("update_gap")),
		reset: c.b("reset_statistics"), channelFirst: c.b("channel_first")}
	if math.IsNaN(a.density) {
		return nil, errors.New("density is NaN")
	}
	return a, nil
}

func (a *frugalAlgo) takeScratch(old mxAlgo) {
	if o, ok := old.(*frugalAlgo); ok {
		a.s32, a.s64, a.refreshes = o.s32, o.s64, o.refreshes
	}
}

// frugalRank is the reference's round(dim·density) of the projected side (Python's round: half to even).
func (a *frugalAlgo) rank(shape []int) int {
	return int(math.RoundToEven(float64(min(shape[0], shape[1])) * a.density))
}

func (a *frugalAlgo) layout(shape []int) []mxSpec {
	r := 0
	if len(shape) == 2 {
		r = a.rank(shape)
	}
	return galoreLayout(shape, r, a.channelFirst)
}

func (a *frugalAlgo) scalars(shape []int) int {
	if len(shape) == 2 {
		return 1
	}
	return 0
}

func (a *frugalAlgo) update32(v *view, st *mxState, lr, wd float64) {
	frugalUpdate(a, &a.s32, v.w32, v.g32, v.shape, st, func(t *mxTensor) []float32 { return t.f32 }, lr, wd)
}

func (a *frugalAlgo) update64(v *view, st *mxState, lr, wd float64) {
	frugalUpdate(a, &a.s64, v.w64, v.g64, v.shape, st, func(t *mxTensor) []float64 { return t.f64 }, lr, wd)
}

// frugalAdam updates the moments with x at step k and writes the AdamW step Δ (negative) into D.
func frugalAdam[T Float](x, m, v, D []T, b1, b2, eps, lr float64, k float64) {
	bc1 := 1 - math.Pow(b1, k)
	bc2s := T(math.Sqrt(1 - math.Pow(b2, k)))
	step := T(-(lr / bc1))
	B1, O1, B2, O2, E := T(b1), T(1-b1), T(b2), T(1-b2), T(eps)
	for i, g := range x {
		mi := m[i]*B1 + O1*g
		vi := v[i]*B2 + O2*g*g
		m[i], v[i] = mi, vi
		D[i] = mi / (T(math.Sqrt(float64(vi)))/bc2s + E) * step
	}
}

func frugalUpdate[T Float](a *frugalAlgo, sc *galoreScratch[T], p, g []T, shape []int, st *mxState, data func(*mxTensor) []T, lr, wd float64) {
	shrink := T(1 - lr*wd)
	if len(shape) != 2 {
		m, v := data(&st.ts[0]), data(&st.ts[1])
		sc.n = growSlice(sc.n, len(p))
		D := sc.n[:len(p)]
		if wd != 0 {
			for i := range p {
				p[i] *= shrink
			}
		}
		frugalAdam(g, m, v, D, a.b1, a.b2, a.eps, lr, float64(st.step))
		for i := range p {
			p[i] += D[i]
			g[i] = 0
		}
		return
	}
	rows, cols := shape[0], shape[1]
	r := a.rank(shape)
	left := lowRankLeft(rows, cols, a.channelFirst)
	P, m, v := data(&st.ts[0]), data(&st.ts[1]), data(&st.ts[2])
	if int64(st.scal[0])%a.gap == 0 {
		if err := lowRankRefresh(g, rows, cols, r, left, P); err == nil {
			a.refreshes++
		}
		if a.reset || st.step == 1 {
			clear(m)
			clear(v)
			st.scal[0] = 0
		}
	}
	if wd != 0 {
		for i := range p {
			p[i] *= shrink
		}
	}
	st.scal[0]++
	nl, n := len(m), len(p)
	sc.low, sc.n, sc.full, sc.sub = growSlice(sc.low, nl), growSlice(sc.n, nl), growSlice(sc.full, n), growSlice(sc.sub, n)
	R, D, U, B := sc.low[:nl], sc.n[:nl], sc.full[:n], sc.sub[:n]
	lowRankProject(P, g, R, rows, cols, r, left)
	frugalAdam(R, m, v, D, a.b1, a.b2, a.eps, lr*a.projScale, st.scal[0])
	lowRankBack(P, D, U, rows, cols, r, left, 1, 0)
	lowRankBack(P, R, B, rows, cols, r, left, 1, 0)
	free := T(-(lr * a.projScale * a.freeScale))
	for i := range p {
		u := U[i] + free*mxSign(g[i]-B[i])
		p[i] += u
		g[i] = 0
	}
}
