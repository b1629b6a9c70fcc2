// Package lbfgs is a numerically faithful Go port of PyTorch 1.13.1's
// torch.optim.LBFGS (torch/optim/lbfgs.py): the limited-memory BFGS method of
// Liu & Nocedal (1989), "On the limited memory BFGS method for large scale
// optimization", Math. Programming 45, 503-528, with torch's two-loop
// recursion, its optional strong-Wolfe line search (_strong_wolfe,
// _cubic_interpolate, themselves ported from the Lua torch/optim lswolfe.lua
// and polyinterp.lua) and its stopping rules.
//
// The package is pure numeric: parameters are one flat vector x (torch's
// _gather_flat_grad / _add_grad order, i.e. all parameters flattened
// row-major and concatenated), the objective writes its gradient into a flat
// slice, and all of torch's self.state is held in a State that persists
// across Step calls and can be exported and re-imported exactly.
//
// Faithfulness notes (the order of floating-point operations is torch's):
//
//   - Vector quantities (flat_grad, d, y, s, q/r, the history) are computed
//     in the parameter type T: float32 parameters compute in float32 like
//     torch float32 tensors. Dot products, sums and max-abs reductions are
//     accumulated sequentially in T. torch delegates dot to BLAS, whose
//     blocked/SIMD accumulation order (and fused multiply-adds in its
//     vectorized add_ kernel) can differ from ours in the last bits; products
//     are explicitly rounded here, so results are the same on every platform
//     and never fused.
//   - Scalars keep torch's mixture of Python floats (float64: loss values,
//     lr, tolerances, prev_loss, a t equal to lr) and 0-dim tensors of the
//     parameter dtype (gtd, ys, ro, al, H_diag, the t of the very first
//     iteration and most t returned by the line search). Arithmetic and
//     comparisons involving a 0-dim tensor happen in T, as in torch; State
//     records for t and H_diag which kind torch would hold.
//   - `python_float / tensor` is evaluated like torch's Tensor.__rdiv__,
//     tensor.reciprocal() * python_float (two roundings, even in float64).
//   - The line search uses its own tolerance_change = 1e-9 (torch does not
//     pass the optimizer's tolerance_change to _strong_wolfe), c1 = 1e-4,
//     c2 = 0.9 and at most 25 iterations.
//   - Python's builtin min/max semantics (which operand is returned, NaN
//     behaviour) are kept; reductions like flat_grad.abs().max() propagate
//     NaN as torch does.
package lbfgs

import (
	"math"

	"github.com/pkg/errors"
)

// Float is the element type of the parameter vector: float32 or float64 (the
// torch parameter dtype).
type Float interface{ ~float32 | ~float64 }

// Objective evaluates the loss at x and writes the gradient into grad
// (len(grad) == len(x)). It is torch's closure: it must not modify x nor keep
// x or grad after returning. The loss is used as float(closure()) is in torch
// (a Python float); to mirror a float32 torch model return a
// float32-representable value. A non-nil error aborts Step (see Step).
type Objective[T Float] func(x, grad []T) (loss float64, err error)

// LineSearchStrongWolfe selects torch's strong-Wolfe line search
// (line_search_fn="strong_wolfe").
const LineSearchStrongWolfe = "strong_wolfe"

// Config holds the hyperparameters of torch.optim.LBFGS (PyTorch 1.13.1),
// under the names of its constructor arguments.
type Config struct {
	// LR is the learning rate lr: the fixed step length without line search,
	// the initial trial step of the line search (scaled by
	// min(1, 1/‖g‖₁) at the very first iteration).
	LR float64
	// MaxIter is max_iter, the maximal number of iterations per Step.
	MaxIter int
	// MaxEval is max_eval, the maximal number of function evaluations per
	// Step (checked after each iteration). 0 means torch's default
	// max_iter*5/4 (integer division). Note that torch's max_eval = 0 behaves
	// like max_eval = 1, so no behaviour is lost.
	MaxEval int
	// ToleranceGrad is tolerance_grad: Step stops when max|g| <= it.
	ToleranceGrad float64
	// ToleranceChange is tolerance_change: Step stops when gᵀd >
	// -tolerance_change, max|t·d| <= tolerance_change or
	// |loss - prev_loss| < tolerance_change.
	ToleranceChange float64
	// HistorySize is history_size, the number of stored (s, y) pairs.
	HistorySize int
	// LineSearch is line_search_fn: "" (None, fixed step) or
	// LineSearchStrongWolfe.
	LineSearch string
}

// DefaultConfig returns torch.optim.LBFGS's defaults: lr 1, max_iter 20,
// max_eval 25 (= max_iter*5/4), tolerance_grad 1e-7, tolerance_change 1e-9,
// history_size 100, no line search.
func DefaultConfig() Config {
	return Config{
		LR:              1,
		MaxIter:         20,
		MaxEval:         20 * 5 / 4,
		ToleranceGrad:   1e-7,
		ToleranceChange: 1e-9,
		HistorySize:     100,
	}
}

// Validate reports a descriptive error for values torch.optim.LBFGS would
// either reject or not handle meaningfully: lr not finite and positive,
// max_iter < 1, max_eval < 0, tolerances negative or not finite,
// history_size < 1, or an unknown line search.
func (c Config) Validate() error {
	if math.IsNaN(c.LR) || math.IsInf(c.LR, 0) || c.LR <= 0 {
		return errors.Errorf("lbfgs: invalid learning rate %v (must be finite and > 0)", c.LR)
	}
	if c.MaxIter < 1 {
		return errors.Errorf("lbfgs: invalid max_iter %d (must be >= 1)", c.MaxIter)
	}
	if c.MaxEval < 0 {
		return errors.Errorf("lbfgs: invalid max_eval %d (must be >= 0; 0 means max_iter*5/4)", c.MaxEval)
	}
	if math.IsNaN(c.ToleranceGrad) || math.IsInf(c.ToleranceGrad, 0) || c.ToleranceGrad < 0 {
		return errors.Errorf("lbfgs: invalid tolerance_grad %v (must be finite and >= 0)", c.ToleranceGrad)
	}
	if math.IsNaN(c.ToleranceChange) || math.IsInf(c.ToleranceChange, 0) || c.ToleranceChange < 0 {
		return errors.Errorf("lbfgs: invalid tolerance_change %v (must be finite and >= 0)", c.ToleranceChange)
	}
	if c.HistorySize < 1 {
		return errors.Errorf("lbfgs: invalid history_size %d (must be >= 1)", c.HistorySize)
	}
	if c.LineSearch != "" && c.LineSearch != LineSearchStrongWolfe {
		return errors.Errorf("lbfgs: unknown line search %q (only \"\" or %q are supported)", c.LineSearch, LineSearchStrongWolfe)
	}
	return nil
}

// maxEval is max_eval with torch's default applied.
func (c Config) maxEval() int {
	if c.MaxEval == 0 {
		return c.MaxIter * 5 / 4
	}
	return c.MaxEval
}

// State is everything torch.optim.LBFGS (PyTorch 1.13.1) keeps in
// self.state between step() calls. The zero value (or NewState) is the state
// of a freshly constructed optimizer. Fields mirror torch's keys; vectors have
// the length n of the parameter vector. D == nil means torch has not stored
// d, t, old_dirs, old_stps, ro, H_diag, prev_flat_grad, prev_loss yet (no
// iteration has run); all of them are set together by the first iteration.
//
// The exported fields may be read freely; to save and restore a state use
// Export and Import. The slices are owned by the State and reused by Step,
// so a State must not be copied by value (copies would share buffers) and is
// not safe for concurrent use.
type State[T Float] struct {
	// FuncEvals is state["func_evals"], the total number of objective
	// evaluations (never reset).
	FuncEvals int
	// NIter is state["n_iter"], the global iteration count (never reset).
	// The very first iteration (NIter == 1) uses d = -g and a scaled step.
	NIter int
	// D is state["d"], the last search direction.
	D []T
	// StepSize is state["t"], the last step length.
	StepSize float64
	// StepSizeIsTensor records whether torch holds t as a 0-dim tensor of the
	// parameter dtype (true) or as a Python float (false); it decides whether
	// scalar arithmetic with t is done in T or in float64.
	StepSizeIsTensor bool
	// OldDirs is state["old_dirs"]: the stored y = g_k+1 - g_k, oldest first.
	OldDirs [][]T
	// OldStps is state["old_stps"]: the stored s = t·d, oldest first.
	OldStps [][]T
	// Ro is state["ro"]: 1/(yᵀs) of each stored pair (0-dim tensors).
	Ro []T
	// HDiag is state["H_diag"], the initial inverse-Hessian scale yᵀs/yᵀy of
	// the newest pair, or the Python int 1 before any pair was stored.
	HDiag float64
	// HDiagIsTensor records whether H_diag is a 0-dim tensor (false: the
	// Python int 1).
	HDiagIsTensor bool
	// PrevFlatGrad is state["prev_flat_grad"], the gradient at the start of
	// the last iteration.
	PrevFlatGrad []T
	// PrevLoss is state["prev_loss"], the loss at the start of the last
	// iteration.
	PrevLoss float64
	// Al is state["al"], the two-loop recursion buffer (created at the second
	// iteration ever with history_size entries; torch's None entries are 0).
	// Its contents never influence results; it is kept for exact state
	// round trips.
	Al []T

	ws *workspace[T]
}

// workspace holds scratch vectors that are not part of torch's state.
type workspace[T Float] struct {
	n     int
	g     []T // flat_grad
	x0    []T // x at the start of Step (restored on error)
	xInit []T // x_init of the line search
	y, s  []T // candidate curvature pair (nil while lent to the history)
	ls    lsBuffers[T]
	// backup is the state at the start of Step (restored on error).
	backup State[T]
}

func newWorkspace[T Float](n int) *workspace[T] {
	return &workspace[T]{
		n:     n,
		g:     make([]T, n),
		x0:    make([]T, n),
		xInit: make([]T, n),
		y:     make([]T, n),
		s:     make([]T, n),
		ls: lsBuffers[T]{
			gPrev: make([]T, n),
			gNew:  make([]T, n),
			bg:    [2][]T{make([]T, n), make([]T, n)},
		},
	}
}

// NewState returns the state of a freshly constructed optimizer for a
// parameter vector of length n, with its scratch buffers preallocated. (The
// zero State is equivalent; it allocates them at the first Step.)
func NewState[T Float](n int) *State[T] {
	st := &State[T]{}
	if n > 0 {
		st.ws = newWorkspace[T](n)
	}
	return st
}

// workspace returns the scratch buffers for vectors of length n.
func (s *State[T]) workspace(n int) *workspace[T] {
	if s.ws == nil || s.ws.n != n {
		s.ws = newWorkspace[T](n)
	}
	return s.ws
}

// check verifies that the state is usable with a parameter vector of length n.
func (s *State[T]) check(n int) error {
	if s.FuncEvals < 0 || s.NIter < 0 {
		return errors.Errorf("negative counters (func_evals %d, n_iter %d)", s.FuncEvals, s.NIter)
	}
	if s.NIter > 0 && (s.D == nil || s.PrevFlatGrad == nil) {
		return errors.Errorf("n_iter = %d but d or prev_flat_grad is missing", s.NIter)
	}
	if s.D != nil && len(s.D) != n {
		return errors.Errorf("d has length %d, parameters have %d", len(s.D), n)
	}
	if s.PrevFlatGrad != nil && len(s.PrevFlatGrad) != n {
		return errors.Errorf("prev_flat_grad has length %d, parameters have %d", len(s.PrevFlatGrad), n)
	}
	if len(s.OldDirs) != len(s.OldStps) || len(s.OldDirs) != len(s.Ro) {
		return errors.Errorf("history lengths differ (old_dirs %d, old_stps %d, ro %d)", len(s.OldDirs), len(s.OldStps), len(s.Ro))
	}
	for i := range s.OldDirs {
		if len(s.OldDirs[i]) != n || len(s.OldStps[i]) != n {
			return errors.Errorf("history pair %d has lengths %d/%d, parameters have %d", i, len(s.OldDirs[i]), len(s.OldStps[i]), n)
		}
	}
	return nil
}

// Step performs one torch `optimizer.step(closure)` of torch.optim.LBFGS
// (PyTorch 1.13.1; Liu & Nocedal 1989). x is the flat parameter vector,
// updated in place; st carries the optimizer state across calls. It returns
// the loss torch's step returns: orig_loss, the loss at x before the step.
//
// As in torch, the objective is always called with x itself: fixed-step
// iterations move x by t·d and re-evaluate (except after the last
// iteration); line-search trials evaluate at x_init + t·d by adding t·d to x
// in place and copying x_init back afterwards (_directional_evaluate), and
// the accepted step is then added to x (_add_grad).
//
// If cfg is invalid or st does not fit len(x), Step returns an error and
// changes nothing. If the objective returns an error, Step returns it wrapped
// and restores x and st exactly as they were before the call.
func Step[T Float](cfg Config, st *State[T], x []T, f Objective[T]) (loss float64, err error) {
	if err := cfg.Validate(); err != nil {
		return 0, err
	}
	if st == nil {
		return 0, errors.New("lbfgs: nil state")
	}
	if f == nil {
		return 0, errors.New("lbfgs: nil objective")
	}
	n := len(x)
	if n == 0 {
		return 0, errors.New("lbfgs: empty parameter vector")
	}
	if err := st.check(n); err != nil {
		return 0, errors.Wrap(err, "lbfgs: state does not match the parameters")
	}
	ws := st.workspace(n)
	copy(ws.x0, x)
	copyState(&ws.backup, st)

	loss, err = step(cfg, st, ws, x, f)
	if err != nil {
		copy(x, ws.x0)
		copyState(st, &ws.backup)
		return 0, err
	}
	return loss, nil
}

// step is the body of LBFGS.step (torch/optim/lbfgs.py, PyTorch 1.13.1).
func step[T Float](cfg Config, st *State[T], ws *workspace[T], x []T, f Objective[T]) (float64, error) {
	var ar arith[T]
	lr := cfg.LR
	maxIter := cfg.MaxIter
	maxEval := cfg.maxEval()
	tolGrad := cfg.ToleranceGrad
	tolChange := cfg.ToleranceChange
	lineSearch := cfg.LineSearch == LineSearchStrongWolfe
	historySize := cfg.HistorySize
	n := len(x)

	evals := 0
	closure := func(x, g []T) (float64, error) {
		evals++
		l, err := f(x, g)
		if err != nil {
			return 0, errors.Wrapf(err, "lbfgs: objective evaluation %d of this step failed", evals)
		}
		return l, nil
	}

	// evaluate initial f(x) and df/dx
	flatGrad := ws.g
	origLoss, err := closure(x, flatGrad)
	if err != nil {
		return 0, err
	}
	loss := origLoss
	currentEvals := 1
	st.FuncEvals++

	optCond := ar.le(ten(maxAbs(flatGrad)), py(tolGrad))

	// optimal condition
	if optCond {
		return origLoss, nil
	}

	// tensors cached in state
	t := scalar{v: st.StepSize, tensor: st.StepSizeIsTensor}
	hDiag := scalar{v: st.HDiag, tensor: st.HDiagIsTensor}
	prevLoss := st.PrevLoss

	nIter := 0
	// optimize for a max of max_iter iterations
	for nIter < maxIter {
		// keep track of nb of iterations
		nIter++
		st.NIter++

		////////////////////////////////////////////////////////////
		// compute gradient descent direction
		////////////////////////////////////////////////////////////
		if st.NIter == 1 {
			st.D = resize(st.D, n)
			for j, g := range flatGrad {
				st.D[j] = -g
			}
			st.OldDirs = emptyVecs(st.OldDirs, historySize)
			st.OldStps = emptyVecs(st.OldStps, historySize)
			if st.Ro == nil {
				st.Ro = make([]T, 0, historySize)
			}
			st.Ro = st.Ro[:0]
			hDiag = py(1)
		} else {
			d := st.D
			// do lbfgs update (update memory)
			if ws.y == nil {
				ws.y = make([]T, n)
			}
			if ws.s == nil {
				ws.s = make([]T, n)
			}
			y, s := ws.y, ws.s
			for j := range y {
				y[j] = flatGrad[j] - st.PrevFlatGrad[j] // flat_grad.sub(prev_flat_grad)
			}
			tt := T(t.v)
			for j := range s {
				s[j] = d[j] * tt // d.mul(t)
			}
			ys := ten(dot(y, s)) // y*s
			if ar.gt(ys, py(1e-10)) {
				// updating memory
				ws.y, ws.s = nil, nil
				if len(st.OldDirs) == historySize {
					// shift history by one (limited-memory); the dropped
					// vectors become the next scratch pair
					ws.y, ws.s = st.OldDirs[0], st.OldStps[0]
					k := len(st.OldDirs) - 1
					copy(st.OldDirs, st.OldDirs[1:])
					copy(st.OldStps, st.OldStps[1:])
					copy(st.Ro, st.Ro[1:])
					st.OldDirs, st.OldStps, st.Ro = st.OldDirs[:k], st.OldStps[:k], st.Ro[:k]
				}

				// store new direction/step
				st.OldDirs = append(st.OldDirs, y)
				st.OldStps = append(st.OldStps, s)
				ro, _ := ar.div(py(1), ys) // 1. / ys: a tensor, cannot raise
				st.Ro = append(st.Ro, T(ro.v))

				// update scale of initial Hessian approximation
				hDiag, _ = ar.div(ys, ten(dot(y, y))) // ys / (y*y)
			}

			// compute the approximate (L-BFGS) inverse Hessian multiplied by
			// the gradient
			numOld := len(st.OldDirs)

			if st.Al == nil {
				st.Al = make([]T, historySize)
			}
			if len(st.Al) < numOld {
				// torch would raise IndexError here (history_size increased
				// between steps); grow the buffer instead.
				st.Al = append(st.Al, make([]T, numOld-len(st.Al))...)
			}
			al := st.Al

			// iteration in L-BFGS loop collapsed to use just one buffer;
			// q, r and the new d share the buffer d (d = r = q * H_diag)
			q := d
			for j, g := range flatGrad {
				q[j] = -g // flat_grad.neg()
			}
			for i := numOld - 1; i >= 0; i-- {
				al[i] = dot(st.OldStps[i], q) * st.Ro[i]
				axpy(q, -al[i], st.OldDirs[i]) // q.add_(old_dirs[i], alpha=-al[i])
			}

			// multiply by initial Hessian; r/d is the final direction
			h := T(hDiag.v)
			for j := range q {
				q[j] *= h // torch.mul(q, H_diag)
			}
			r := q
			for i := 0; i < numOld; i++ {
				beI := dot(st.OldDirs[i], r) * st.Ro[i]
				axpy(r, al[i]-beI, st.OldStps[i]) // r.add_(old_stps[i], alpha=al[i] - be_i)
			}
		}
		d := st.D

		st.PrevFlatGrad = resize(st.PrevFlatGrad, n)
		copy(st.PrevFlatGrad, flatGrad)
		prevLoss = loss

		////////////////////////////////////////////////////////////
		// compute step length
		////////////////////////////////////////////////////////////
		// reset initial guess for step size
		if st.NIter == 1 {
			// min(1., 1. / flat_grad.abs().sum()) * lr
			inv, _ := ar.div(py(1), ten(absSum(flatGrad)))
			t = ar.mul(ar.min(py(1), inv), py(lr))
		} else {
			t = py(lr)
		}

		// directional derivative
		gtd := ten(dot(flatGrad, d)) // g * d

		// directional derivative is below tolerance
		if ar.gt(gtd, py(-tolChange)) {
			break
		}

		// optional line search: user function
		lsFuncEvals := 0
		if lineSearch {
			// perform line search, using user function
			copy(ws.xInit, x) // x_init = self._clone_param()
			objFunc := func(tt scalar, g []T) (float64, error) {
				// self._directional_evaluate(closure, x, t, d)
				addGrad(x, tt, d)
				l, err := closure(x, g)
				copy(x, ws.xInit) // self._set_param(x)
				return l, err
			}
			loss, t, lsFuncEvals, err = strongWolfe(objFunc, t, d, loss, flatGrad, gtd, &ws.ls)
			if err != nil {
				return 0, err
			}
			addGrad(x, t, d)
			optCond = ar.le(ten(maxAbs(flatGrad)), py(tolGrad))
		} else {
			// no line search, simply move with fixed-step
			addGrad(x, t, d)
			if nIter != maxIter {
				// re-evaluate function only if not in last iteration
				loss, err = closure(x, flatGrad)
				if err != nil {
					return 0, err
				}
				optCond = ar.le(ten(maxAbs(flatGrad)), py(tolGrad))
				lsFuncEvals = 1
			}
		}

		// update func eval
		currentEvals += lsFuncEvals
		st.FuncEvals += lsFuncEvals

		////////////////////////////////////////////////////////////
		// check conditions
		////////////////////////////////////////////////////////////
		if nIter == maxIter {
			break
		}

		if currentEvals >= maxEval {
			break
		}

		// optimal condition
		if optCond {
			break
		}

		// lack of progress: d.mul(t).abs().max() <= tolerance_change
		if ar.le(ten(maxAbsScaled(d, T(t.v))), py(tolChange)) {
			break
		}

		if math.Abs(loss-prevLoss) < tolChange {
			break
		}
	}

	st.StepSize, st.StepSizeIsTensor = t.v, t.tensor
	st.HDiag, st.HDiagIsTensor = hDiag.v, hDiag.tensor
	st.PrevLoss = prevLoss
	return origLoss, nil
}

// addGrad is LBFGS._add_grad(t, d): p.add_(d, alpha=t), i.e. x + T(t)·d
// elementwise in T.
func addGrad[T Float](x []T, t scalar, d []T) {
	a := T(t.v)
	for j := range x {
		x[j] += T(a * d[j])
	}
}

// axpy is v.add_(w, alpha=a): v + a·w elementwise in T (product rounded
// before the sum, never fused).
func axpy[T Float](v []T, a T, w []T) {
	for j := range v {
		v[j] += T(a * w[j])
	}
}

// dot is a.dot(b) accumulated sequentially in T.
func dot[T Float](a, b []T) T {
	var s T
	for i := range a {
		s += T(a[i] * b[i])
	}
	return s
}

// absSum is v.abs().sum() accumulated sequentially in T.
func absSum[T Float](v []T) T {
	var s T
	for _, e := range v {
		s += T(math.Abs(float64(e)))
	}
	return s
}

// maxAbs is v.abs().max() (NaN-propagating like torch.max). len(v) > 0.
func maxAbs[T Float](v []T) T {
	m := T(math.Abs(float64(v[0])))
	for _, e := range v {
		a := T(math.Abs(float64(e)))
		if a != a {
			return a
		}
		if a > m {
			m = a
		}
	}
	return m
}

// maxAbsScaled is v.mul(t).abs().max() with the product rounded to T.
func maxAbsScaled[T Float](v []T, t T) T {
	m := T(math.Abs(float64(T(v[0] * t))))
	for _, e := range v {
		a := T(math.Abs(float64(T(e * t))))
		if a != a {
			return a
		}
		if a > m {
			m = a
		}
	}
	return m
}

// resize returns a slice of length n, reusing v's storage when possible.
func resize[T Float](v []T, n int) []T {
	if cap(v) >= n {
		return v[:n]
	}
	return make([]T, n)
}

// emptyVecs returns an empty, non-nil history list.
func emptyVecs[T Float](v [][]T, capacity int) [][]T {
	if v == nil {
		return make([][]T, 0, capacity)
	}
	return v[:0]
}

// copyVec returns a copy of src, reusing dst's storage; nil stays nil.
func copyVec[T Float](dst, src []T) []T {
	if src == nil {
		return nil
	}
	dst = resize(dst, len(src))
	copy(dst, src)
	return dst
}

// copyVecs deep-copies src, reusing the vectors of dst[:len(dst)] (which are
// distinct); nil stays nil.
func copyVecs[T Float](dst, src [][]T) [][]T {
	if src == nil {
		return nil
	}
	old := len(dst)
	if cap(dst) < len(src) {
		nd := make([][]T, len(src))
		copy(nd, dst)
		dst = nd
	} else {
		dst = dst[:len(src)]
		for i := old; i < len(src); i++ {
			dst[i] = nil // slots past the old length may alias live vectors
		}
	}
	for i := range src {
		dst[i] = copyVec(dst[i], src[i])
	}
	return dst
}

// copyState deep-copies the torch state of src into dst (not the workspace).
func copyState[T Float](dst, src *State[T]) {
	dst.FuncEvals = src.FuncEvals
	dst.NIter = src.NIter
	dst.D = copyVec(dst.D, src.D)
	dst.StepSize = src.StepSize
	dst.StepSizeIsTensor = src.StepSizeIsTensor
	dst.OldDirs = copyVecs(dst.OldDirs, src.OldDirs)
	dst.OldStps = copyVecs(dst.OldStps, src.OldStps)
	dst.Ro = copyVec(dst.Ro, src.Ro)
	dst.HDiag = src.HDiag
	dst.HDiagIsTensor = src.HDiagIsTensor
	dst.PrevFlatGrad = copyVec(dst.PrevFlatGrad, src.PrevFlatGrad)
	dst.PrevLoss = src.PrevLoss
	dst.Al = copyVec(dst.Al, src.Al)
}
