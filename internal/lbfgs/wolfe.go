package lbfgs

import (
	"math"

	"github.com/pkg/errors"
)

// Constants of torch.optim.lbfgs._strong_wolfe (PyTorch 1.13.1). LBFGS.step
// calls _strong_wolfe(obj_func, x_init, t, d, loss, flat_grad, gtd) without
// passing tolerance_change, so the line search always uses its own default
// 1e-9, whatever Config.ToleranceChange says.
const (
	wolfeC1              = 1e-4
	wolfeC2              = 0.9
	wolfeToleranceChange = 1e-9
	wolfeMaxLS           = 25
)

// errZeroDivision mirrors the Python ZeroDivisionError raised by
// _cubic_interpolate when x1 == x2 and both are Python floats.
var errZeroDivision = errors.New("lbfgs: float division by zero in cubic interpolation (Python ZeroDivisionError in torch)")

// scalar mirrors a Python scalar of torch's L-BFGS code. torch mixes two kinds
// of scalars: Python floats/ints (loss values, lr, tolerances, the initial t)
// and 0-dim tensors of the parameter dtype (gtd, ys, ro, H_diag, al, the t
// returned by the cubic interpolation, ...). An expression involving a 0-dim
// tensor is a 0-dim tensor computed in the parameter dtype (a Python float
// operand is first rounded to that dtype); an expression of Python numbers is
// computed in float64. For float64 parameters the two agree except for two
// details that are reproduced here: `python_float / tensor` is evaluated by
// torch as `tensor.reciprocal() * python_float` (Tensor.__rdiv__), i.e. with
// two roundings, and a Python float division by zero raises.
type scalar struct {
	v      float64
	tensor bool
}

// py returns a Python float (or int) scalar.
func py(v float64) scalar { return scalar{v: v} }

// ten returns a 0-dim tensor scalar of dtype T.
func ten[T Float](v T) scalar { return scalar{v: float64(v), tensor: true} }

// arith implements Python/torch scalar arithmetic for parameter dtype T.
type arith[T Float] struct{}

func (arith[T]) add(a, b scalar) scalar {
	if a.tensor || b.tensor {
		return scalar{v: float64(T(T(a.v) + T(b.v))), tensor: true}
	}
	return scalar{v: a.v + b.v}
}

func (arith[T]) sub(a, b scalar) scalar {
	if a.tensor || b.tensor {
		return scalar{v: float64(T(T(a.v) - T(b.v))), tensor: true}
	}
	return scalar{v: a.v - b.v}
}

func (arith[T]) mul(a, b scalar) scalar {
	if a.tensor || b.tensor {
		return scalar{v: float64(T(T(a.v) * T(b.v))), tensor: true}
	}
	return scalar{v: a.v * b.v}
}

// div is Python's a / b: tensor true division if a is a tensor,
// b.reciprocal() * a if only b is a tensor (Tensor.__rdiv__), float division
// (raising on a zero divisor) if both are Python numbers.
func (arith[T]) div(a, b scalar) (scalar, error) {
	switch {
	case a.tensor:
		return scalar{v: float64(T(T(a.v) / T(b.v))), tensor: true}, nil
	case b.tensor:
		rec := T(T(1) / T(b.v))
		return scalar{v: float64(T(rec * T(a.v))), tensor: true}, nil
	case b.v == 0:
		return scalar{}, errZeroDivision
	default:
		return scalar{v: a.v / b.v}, nil
	}
}

func (arith[T]) abs(a scalar) scalar {
	return scalar{v: math.Abs(a.v), tensor: a.tensor}
}

// sqrt is Tensor.sqrt (math.Sqrt is correctly rounded, and rounding the
// float64 root of a float32 value to float32 gives the correctly rounded
// float32 root).
func (arith[T]) sqrt(a scalar) scalar {
	if a.tensor {
		return scalar{v: float64(T(math.Sqrt(float64(T(a.v))))), tensor: true}
	}
	return scalar{v: math.Sqrt(a.v)}
}

// Comparisons: a comparison involving a 0-dim tensor is done in dtype T.
func (arith[T]) lt(a, b scalar) bool {
	if a.tensor || b.tensor {
		return T(a.v) < T(b.v)
	}
	return a.v < b.v
}

func (arith[T]) le(a, b scalar) bool {
	if a.tensor || b.tensor {
		return T(a.v) <= T(b.v)
	}
	return a.v <= b.v
}

func (ar arith[T]) gt(a, b scalar) bool { return ar.lt(b, a) }

func (ar arith[T]) ge(a, b scalar) bool { return ar.le(b, a) }

// min is Python's builtin min(a, b): b if b < a, else a (NaN handling and the
// returned object follow Python, not math.Min).
func (ar arith[T]) min(a, b scalar) scalar {
	if ar.lt(b, a) {
		return b
	}
	return a
}

// max is Python's builtin max(a, b): b if b > a, else a.
func (ar arith[T]) max(a, b scalar) scalar {
	if ar.gt(b, a) {
		return b
	}
	return a
}

// cubicInterpolate ports torch.optim.lbfgs._cubic_interpolate, keeping the
// Python evaluation order and scalar kinds. bounds may be nil.
func (ar arith[T]) cubicInterpolate(x1, f1, g1, x2, f2, g2 scalar, bounds *[2]scalar) (scalar, error) {
	// Compute bounds of interpolation area
	var xminBound, xmaxBound scalar
	switch {
	case bounds != nil:
		xminBound, xmaxBound = bounds[0], bounds[1]
	case ar.le(x1, x2):
		xminBound, xmaxBound = x1, x2
	default:
		xminBound, xmaxBound = x2, x1
	}

	// d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
	q, err := ar.div(ar.mul(py(3), ar.sub(f1, f2)), ar.sub(x1, x2))
	if err != nil {
		return scalar{}, err
	}
	d1 := ar.sub(ar.add(g1, g2), q)
	// d2_square = d1 ** 2 - g1 * g2   (torch pow(x, 2) is x * x)
	d2Square := ar.sub(ar.mul(d1, d1), ar.mul(g1, g2))
	if ar.ge(d2Square, py(0)) {
		d2 := ar.sqrt(d2Square)
		var minPos scalar
		if ar.le(x1, x2) {
			// x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
			r, err := ar.div(ar.sub(ar.add(g2, d2), d1), ar.add(ar.sub(g2, g1), ar.mul(py(2), d2)))
			if err != nil {
				return scalar{}, err
			}
			minPos = ar.sub(x2, ar.mul(ar.sub(x2, x1), r))
		} else {
			// x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
			r, err := ar.div(ar.sub(ar.add(g1, d2), d1), ar.add(ar.sub(g1, g2), ar.mul(py(2), d2)))
			if err != nil {
				return scalar{}, err
			}
			minPos = ar.sub(x1, ar.mul(ar.sub(x1, x2), r))
		}
		return ar.min(ar.max(minPos, xminBound), xmaxBound), nil
	}
	// (xmin_bound + xmax_bound) / 2.
	return ar.div(ar.add(xminBound, xmaxBound), py(2))
}

// dirEval evaluates the objective at x_init + t*d and writes the gradient into
// g (torch LBFGS._directional_evaluate).
type dirEval[T Float] func(t scalar, g []T) (float64, error)

// lsBuffers are the gradient vectors the line search needs besides the input
// gradient: g_prev, g_new and the two bracket gradients.
type lsBuffers[T Float] struct {
	gPrev, gNew []T
	bg          [2][]T
}

// strongWolfe ports torch.optim.lbfgs._strong_wolfe (c1 = 1e-4, c2 = 0.9,
// tolerance_change = 1e-9, max_ls = 25). f, g and gtd are the loss, gradient
// and directional derivative at t = 0; g is not modified until the end, when
// the gradient at the returned step is copied into it. It returns the loss at
// the accepted step, the step t and the number of function evaluations.
func strongWolfe[T Float](obj dirEval[T], t scalar, d []T, f float64, g []T, gtd scalar, b *lsBuffers[T]) (float64, scalar, int, error) {
	var ar arith[T]
	c1 := py(wolfeC1)
	negC2 := py(-wolfeC2) // Python parses `-c2 * gtd` as `(-c2) * gtd`

	dNorm := ten(maxAbs(d))
	copy(b.gPrev, g) // g = g.clone(); g_prev = g
	// evaluate objective and gradient using initial step
	fNew, err := obj(t, b.gNew)
	if err != nil {
		return 0, scalar{}, 0, err
	}
	lsFuncEvals := 1
	gtdNew := ten(dot(b.gNew, d))

	// bracket an interval containing a point satisfying the Wolfe criteria
	tPrev, fPrev, gtdPrev := py(0), f, gtd
	done := false
	lsIter := 0
	var (
		bracket    [2]scalar
		bracketF   [2]float64
		bracketGtd [2]scalar
		blen       int
	)
	// armijoFails is `f_new > (f + c1 * t * gtd)`.
	armijoFails := func(fNew float64, t scalar) bool {
		return ar.gt(py(fNew), ar.add(py(f), ar.mul(ar.mul(c1, t), gtd)))
	}
	for lsIter < wolfeMaxLS {
		// check conditions
		if armijoFails(fNew, t) || (lsIter > 1 && fNew >= fPrev) {
			bracket = [2]scalar{tPrev, t}
			bracketF = [2]float64{fPrev, fNew}
			copy(b.bg[0], b.gPrev)
			copy(b.bg[1], b.gNew)
			bracketGtd = [2]scalar{gtdPrev, gtdNew}
			blen = 2
			break
		}

		if ar.le(ar.abs(gtdNew), ar.mul(negC2, gtd)) {
			bracket[0] = t
			bracketF[0] = fNew
			copy(b.bg[0], b.gNew)
			blen = 1
			done = true
			break
		}

		if ar.ge(gtdNew, py(0)) {
			bracket = [2]scalar{tPrev, t}
			bracketF = [2]float64{fPrev, fNew}
			copy(b.bg[0], b.gPrev)
			copy(b.bg[1], b.gNew)
			bracketGtd = [2]scalar{gtdPrev, gtdNew}
			blen = 2
			break
		}

		// interpolate
		minStep := ar.add(t, ar.mul(py(0.01), ar.sub(t, tPrev)))
		maxStep := ar.mul(t, py(10))
		tmp := t
		t, err = ar.cubicInterpolate(tPrev, py(fPrev), gtdPrev, t, py(fNew), gtdNew, &[2]scalar{minStep, maxStep})
		if err != nil {
			return 0, scalar{}, 0, err
		}

		// next step
		tPrev = tmp
		fPrev = fNew
		copy(b.gPrev, b.gNew)
		gtdPrev = gtdNew
		fNew, err = obj(t, b.gNew)
		if err != nil {
			return 0, scalar{}, 0, err
		}
		lsFuncEvals++
		gtdNew = ten(dot(b.gNew, d))
		lsIter++
	}

	// reached max number of iterations?
	if lsIter == wolfeMaxLS {
		bracket = [2]scalar{py(0), t}
		bracketF = [2]float64{f, fNew}
		copy(b.bg[0], g)
		copy(b.bg[1], b.gNew)
		blen = 2
		// bracket_gtd is not reassigned by torch here; the zoom loop below
		// does not run (ls_iter == max_ls), so it is never read.
	}

	// zoom phase: we now have a point satisfying the criteria, or a bracket
	// around it. We refine the bracket until we find the exact point
	// satisfying the criteria.
	insufProgress := false
	// find high and low points in bracket
	lowPos, highPos := 0, 1
	if !(bracketF[0] <= bracketF[blen-1]) {
		lowPos, highPos = 1, 0
	}
	for !done && lsIter < wolfeMaxLS {
		// line-search bracket is so small
		if ar.lt(ar.mul(ar.abs(ar.sub(bracket[1], bracket[0])), dNorm), py(wolfeToleranceChange)) {
			break
		}

		// compute new trial value
		t, err = ar.cubicInterpolate(bracket[0], py(bracketF[0]), bracketGtd[0], bracket[1], py(bracketF[1]), bracketGtd[1], nil)
		if err != nil {
			return 0, scalar{}, 0, err
		}

		// test that we are making sufficient progress: in case `t` is so
		// close to boundary, we mark that we are making insufficient
		// progress, and if we have made insufficient progress in the last
		// step, or `t` is at one of the boundary, we move `t` to a position
		// which is `0.1 * len(bracket)` away from the nearest boundary point.
		bMax := ar.max(bracket[0], bracket[1]) // max(bracket)
		bMin := ar.min(bracket[0], bracket[1]) // min(bracket)
		eps := ar.mul(py(0.1), ar.sub(bMax, bMin))
		if ar.lt(ar.min(ar.sub(bMax, t), ar.sub(t, bMin)), eps) {
			// interpolation close to boundary
			if insufProgress || ar.ge(t, bMax) || ar.le(t, bMin) {
				// evaluate at 0.1 away from boundary
				if ar.lt(ar.abs(ar.sub(t, bMax)), ar.abs(ar.sub(t, bMin))) {
					t = ar.sub(bMax, eps)
				} else {
					t = ar.add(bMin, eps)
				}
				insufProgress = false
			} else {
				insufProgress = true
			}
		} else {
			insufProgress = false
		}

		// Evaluate new point
		fNew, err = obj(t, b.gNew)
		if err != nil {
			return 0, scalar{}, 0, err
		}
		lsFuncEvals++
		gtdNew = ten(dot(b.gNew, d))
		lsIter++

		if armijoFails(fNew, t) || fNew >= bracketF[lowPos] {
			// Armijo condition not satisfied or not lower than lowest point
			bracket[highPos] = t
			bracketF[highPos] = fNew
			copy(b.bg[highPos], b.gNew)
			bracketGtd[highPos] = gtdNew
			if bracketF[0] <= bracketF[1] {
				lowPos, highPos = 0, 1
			} else {
				lowPos, highPos = 1, 0
			}
		} else {
			if ar.le(ar.abs(gtdNew), ar.mul(negC2, gtd)) {
				// Wolfe conditions satisfied
				done = true
			} else if ar.ge(ar.mul(gtdNew, ar.sub(bracket[highPos], bracket[lowPos])), py(0)) {
				// old high becomes new low
				bracket[highPos] = bracket[lowPos]
				bracketF[highPos] = bracketF[lowPos]
				copy(b.bg[highPos], b.bg[lowPos])
				bracketGtd[highPos] = bracketGtd[lowPos]
			}

			// new point becomes new low
			bracket[lowPos] = t
			bracketF[lowPos] = fNew
			copy(b.bg[lowPos], b.gNew)
			bracketGtd[lowPos] = gtdNew
		}
	}

	// return stuff
	t = bracket[lowPos]
	fNew = bracketF[lowPos]
	copy(g, b.bg[lowPos])
	return fNew, t, lsFuncEvals, nil
}
