from marshmallow import Schema, fields, validate


class CheckSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ok", "unavailable"]))
    latency_ms = fields.Float(metadata={"description": "Round trip of the check, when it succeeded"})


class RoleCheckSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ok", "unsafe"]))


class ChecksSchema(Schema):
    database = fields.Nested(CheckSchema, required=True)
    database_role = fields.Nested(
        RoleCheckSchema,
        metadata={"description": "Present when the database answered: is the service's role a safe one"},
    )
    rate_limit_storage = fields.Nested(CheckSchema, metadata={"description": "Present when the storage is Redis"})


class ReadinessChecksSchema(ChecksSchema):
    migrations = fields.Nested(
        Schema.from_dict(
            {"status": fields.String(required=True, validate=validate.OneOf(["ok", "behind", "unavailable"]))},
            name="MigrationsCheck",
        ),
        metadata={"description": "Present when the database answered: is it at the code's migration head"},
    )
    row_level_security = fields.Nested(
        Schema.from_dict(
            {"status": fields.String(required=True, validate=validate.OneOf(["ok", "unsafe", "unavailable"]))},
            name="RowLevelSecurityCheck",
        ),
        metadata={"description": "Present when the database answered: does every tenant table have its isolation"},
    )


class ReadinessSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ok", "unavailable"]))
    checks = fields.Nested(ReadinessChecksSchema, required=True)


class LivenessSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ok"]))


class HealthSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ok", "unavailable"]))
    checks = fields.Nested(ChecksSchema, required=True)


class SystemInfoSchema(Schema):
    name = fields.String(required=True, metadata={"example": "Wafaa AI Concierge"})
    version = fields.String(required=True, metadata={"example": "1.0.0"})
    api_version = fields.String(required=True, metadata={"example": "v1"})
    status = fields.String(required=True, metadata={"example": "ok"})
    server_time = fields.AwareDateTime(required=True, metadata={"description": "Current server time (UTC)"})
