"""Build the compiled modules; everything else is declared in pyproject.toml."""
from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [
            Extension("resolver.dnssec.canonical", ["resolver/dnssec/canonical.pyx"]),
            Extension("resolver.dnssec.crypto", ["resolver/dnssec/crypto.pyx"]),
            Extension("resolver.dnssec.verify", ["resolver/dnssec/verify.pyx"]),
            Extension("resolver.resolve._fastcache", ["resolver/resolve/_fastcache.pyx"]),
            Extension("resolver.resolve._entry", ["resolver/resolve/_entry.pyx"]),
            Extension("resolver.resolve._lru", ["resolver/resolve/_lru.pyx"]),
            Extension("resolver.resolve._wireparse", ["resolver/resolve/_wireparse.pyx"]),
            Extension("resolver.resolve._udp", ["resolver/resolve/_udp.pyx"]),
            Extension("resolver.forensic._queue", ["resolver/forensic/_queue.pyx"],
                      libraries=["z"]),
            Extension("resolver.forensic._fastlog", ["resolver/forensic/_fastlog.pyx"],
                      libraries=["crypto"],  # OpenSSL's SHA-256; its 1.1 API, not deprecated
                      define_macros=[("OPENSSL_API_COMPAT", "0x10101000L")]),
            Extension("resolver.frontend.admission", ["resolver/frontend/admission.pyx"]),
            Extension("resolver.frontend._fastpath", ["resolver/frontend/_fastpath.pyx"]),
            Extension("resolver.frontend._render", ["resolver/frontend/_render.pyx"]),
        ],
        compiler_directives={"language_level": "3"},
    ),
)
