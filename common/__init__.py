"""The shared vocabulary of the pure packages: object classes, device resolution, the Kalman
filter and the geometry and command types, each defined once.

The lowest layer: it imports no other package of the project, and every other package may
import it. Import the submodules (``common.classes``, ``common.device``, ...) directly; this
package imports nothing so that loading one of them stays cheap.
"""
