"""Errors of the licensing (trust) library.

Exception tree::

    LicensingError               root; every failure of this part is one of these
    +-- CanonicalJSONError       a value has no canonical JSON form, or JSON text is not strict
    +-- KeyMaterialError         key loading, saving and key type errors
    |   +-- KeyFormatError       not a PEM key we can read
    |   +-- KeyEncryptedError    the PEM key is password protected
    |   +-- UnsupportedKeyError  RSA, another curve, or a key type the operation does not take
    |   +-- KeyExistsError       refusing to overwrite a key file
    +-- EnvelopeError            DSSE envelope problems
    |   +-- EnvelopeFormatError  not a well-formed DSSE JSON envelope
    |   +-- EnvelopeTooLargeError
    |   +-- SignatureVerificationError  no trusted key verified the envelope
    +-- StatementFormatError     not a well-formed in-toto Statement v1 (or wrong predicate)
    +-- ModelBundleError         model_signing-compatible Sigstore bundles
    |   +-- ModelBundleFormatError
    |   +-- ModelBundleSignatureError
    |   +-- ModelManifestMismatchError  the subject digest does not match the resources
    +-- ReleaseStatementError    a release statement that cannot be built or parsed
    +-- AttestationError         usage attestation verification; one subclass per reason
        +-- AttestationMalformedError, AttestationTooLargeError,
            AttestationSignatureInvalidError, AttestationKeyMismatchError,
            AttestationWrongSubjectError, AttestationWrongTierError,
            AttestationStaleTermsError, AttestationMissingFieldError,
            AttestationExpiredError, AttestationNotYetValidError,
            AttestationLifetimeTooLongError

Every class carries a stable ``code`` that the gateway and the CLI show to people.
"""

from __future__ import annotations


class LicensingError(Exception):
    """Root of every error raised by :mod:`licensing`."""

    code = "licensing_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TransparencyLogError(LicensingError):
    """Root of the transparency-log errors (:mod:`licensing.tlog`)."""

    code = "tlog_error"


class TlogProofInvalidError(TransparencyLogError):
    """An inclusion or consistency proof does not verify (or is malformed)."""

    code = "tlog_proof_invalid"


class TlogRangeError(TransparencyLogError):
    """A proof was requested for an index or size outside the tree."""

    code = "tlog_range_invalid"


class TlogNodeMissingError(TransparencyLogError):
    """The node store lacks a node the tree of this size must have."""

    code = "tlog_node_missing"


class TlogInconsistentError(TransparencyLogError):
    """Stored log data or two checkpoints contradict each other (tampering or a fork)."""

    code = "tlog_inconsistent"


class NoteMalformedError(TransparencyLogError):
    """A signed note does not follow c2sp.org/signed-note."""

    code = "note_malformed"


class NoteKeyInvalidError(TransparencyLogError):
    """A note signer or verifier key string is malformed."""

    code = "note_key_invalid"


class NoteSignatureInvalidError(TransparencyLogError):
    """A signature from a trusted key does not verify over the note text."""

    code = "note_signature_invalid"


class NoteUnverifiedError(TransparencyLogError):
    """No signature in the note comes from a trusted key."""

    code = "note_unverified"


class CheckpointMalformedError(TransparencyLogError):
    """A checkpoint body does not follow c2sp.org/tlog-checkpoint."""

    code = "checkpoint_malformed"


class ReceiptMalformedError(TransparencyLogError):
    """A receipt does not follow c2sp.org/tlog-proof@v1."""

    code = "receipt_malformed"


class CosignatureInvalidError(TransparencyLogError):
    """A c2sp.org/tlog-cosignature line is malformed or does not verify, or too few verify."""

    code = "cosignature_invalid"


class WitnessError(TransparencyLogError):
    """Root of the refusals of a c2sp.org/tlog-witness witness; ``status`` is the HTTP status."""

    code = "witness_error"
    status = 400


class WitnessRequestMalformedError(WitnessError):
    """The add-checkpoint body is malformed, or its old size is past the checkpoint's."""

    code = "witness_request_malformed"
    status = 400


class WitnessUnknownLogError(WitnessError):
    """The checkpoint's origin is not a log this witness is configured for."""

    code = "witness_unknown_log"
    status = 404


class WitnessForbiddenError(WitnessError):
    """No signature on the checkpoint verifies with a key the witness trusts for its origin."""

    code = "witness_forbidden"
    status = 403


class WitnessConflictError(WitnessError):
    """The old size is not the size the witness last cosigned; ``known_size`` is that size."""

    code = "witness_conflict"
    status = 409

    def __init__(self, message: str, known_size: int) -> None:
        super().__init__(message)
        self.known_size = known_size


class WitnessProofInvalidError(WitnessError):
    """The consistency proof does not verify: the checkpoint does not extend the last one."""

    code = "witness_proof_invalid"
    status = 422


class CanonicalJSONError(LicensingError):
    """A value cannot be written as canonical JSON, or JSON text breaks our strict profile."""

    code = "canonical_json_invalid"


class KeyMaterialError(LicensingError):
    """Root of key loading, saving and key type errors."""

    code = "key_error"


class KeyFormatError(KeyMaterialError):
    """The bytes are not a PEM key we can read."""

    code = "key_invalid"


class KeyEncryptedError(KeyMaterialError):
    """The PEM private key is encrypted; tiergate keys are stored unencrypted with mode 0600."""

    code = "key_encrypted"


class UnsupportedKeyError(KeyMaterialError):
    """RSA, a curve other than P-256, or a key type the operation does not accept."""

    code = "key_unsupported"


class KeyExistsError(KeyMaterialError):
    """The key file already exists and overwriting was not asked for."""

    code = "key_exists"


class EnvelopeError(LicensingError):
    """Root of DSSE envelope errors."""

    code = "envelope_error"


class EnvelopeFormatError(EnvelopeError):
    """The bytes are not a well-formed DSSE JSON envelope."""

    code = "envelope_malformed"


class EnvelopeTooLargeError(EnvelopeError):
    """The envelope is larger than the caller's bound."""

    code = "envelope_too_large"


class SignatureVerificationError(EnvelopeError):
    """No signature of the envelope verifies under any trusted key."""

    code = "signature_invalid"


class StatementFormatError(LicensingError):
    """The payload is not a well-formed in-toto Statement v1 of the expected predicate type."""

    code = "statement_malformed"


class ModelBundleError(LicensingError):
    """Root of errors about model_signing-compatible Sigstore bundles."""

    code = "model_bundle_error"


class ModelBundleFormatError(ModelBundleError):
    """The bundle, its envelope or its statement is malformed."""

    code = "model_bundle_malformed"


class ModelBundleSignatureError(ModelBundleError):
    """The bundle is not signed by the given public key."""

    code = "model_bundle_signature_invalid"


class ModelManifestMismatchError(ModelBundleError):
    """The statement's subject digest does not match its resources."""

    code = "model_bundle_manifest_mismatch"


class ReleaseStatementError(LicensingError):
    """A release statement cannot be built, or a signed one does not parse or verify."""

    code = "release_statement_invalid"


class AttestationError(LicensingError):
    """Root of usage attestation verification errors; each reason has its own subclass."""

    code = "attestation_invalid"


class AttestationMalformedError(AttestationError):
    """Not a well-formed usage attestation envelope, statement or predicate."""

    code = "attestation_malformed"


class AttestationTooLargeError(AttestationError):
    """The attestation is larger than the verifier's bound."""

    code = "attestation_too_large"


class AttestationSignatureInvalidError(AttestationError):
    """No trusted requester key verifies the attestation."""

    code = "attestation_signature_invalid"


class AttestationKeyMismatchError(AttestationError):
    """The predicate names a requester key other than the one that signed it."""

    code = "attestation_key_mismatch"


class AttestationWrongSubjectError(AttestationError):
    """The attestation is about another release (or another release digest)."""

    code = "attestation_wrong_subject"


class AttestationWrongTierError(AttestationError):
    """The attestation asks for another tier than the one being granted."""

    code = "attestation_wrong_tier"


class AttestationStaleTermsError(AttestationError):
    """The accepted terms digest is not the release's current terms digest."""

    code = "attestation_stale_terms"


class AttestationMissingFieldError(AttestationError):
    """A field the publisher requires is absent or empty."""

    code = "attestation_missing_field"

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class AttestationExpiredError(AttestationError):
    """The attestation's ``expires_at`` has passed (beyond the allowed clock skew)."""

    code = "attestation_expired"


class AttestationNotYetValidError(AttestationError):
    """The attestation's ``issued_at`` is in the future (beyond the allowed clock skew)."""

    code = "attestation_not_yet_valid"


class AttestationLifetimeTooLongError(AttestationError):
    """``expires_at - issued_at`` exceeds the verifier's maximum lifetime."""

    code = "attestation_lifetime_too_long"
