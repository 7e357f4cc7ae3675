"""Course material that is code: the autograders of ``notebooks/08_exercises`` and their reference answers.

* :mod:`refimpl.course.grading` checks a student's function and prints the smallest counterexample when it
  is wrong (built on the oracle's checks :func:`refimpl.testing.check_projection`,
  :func:`refimpl.testing.check_layer` and :func:`refimpl.testing.check_admm_step`);
* :mod:`refimpl.course.solutions` holds the reference answers, kept out of the student notebook. CI runs
  the exercises with them (``tests/test_exercises.py``), and with a planted wrong answer that the grader
  must report.
"""

from refimpl.course.grading import Grade, grade_admm_update, grade_conv2d_backward, grade_project_filters

__all__ = ["Grade", "grade_admm_update", "grade_conv2d_backward", "grade_project_filters"]
