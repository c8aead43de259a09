"""Model tags: FATE-Flow's ``t_tags`` and ``t_model_tag``, with FATE's answers and without its races.

A tag attaches to a model *version* (FATE's ``f_m_id`` is the job id, which is the version), not to
a party row. The caller resolves the job id to a model first, and passes the model id along only
for the wording of the messages. Unlike FATE, ``t_model_tag`` has a UNIQUE (model_version, tag)
constraint: a tag is added by inserting and letting the database refuse a duplicate, so two
concurrent ``add`` calls cannot both succeed, and a missing tag is created the same way.
"""

from __future__ import annotations

import peewee

from fate_registry.db import base_model, now_ms
from fate_registry.errors import Reason, RegistryError, Retcode
from fate_registry.v1.registry_pb2 import Tag
from registry_server import paging

MAX_TAG_NAME_LENGTH = 100
"""FATE's ``t_tags.f_name`` is a char(100)."""


class TagStore:
    def __init__(self, db: peewee.Database) -> None:
        self.db = db
        base = base_model(db)

        class TagRow(base):  # type: ignore[misc, valid-type]
            name = peewee.CharField(max_length=MAX_TAG_NAME_LENGTH, unique=True)
            description = peewee.TextField(default="")
            create_time = peewee.BigIntegerField()

            class Meta:
                table_name = "t_tags"

        class ModelTagRow(base):  # type: ignore[misc, valid-type]
            model_version = peewee.CharField(max_length=255)
            tag = peewee.ForeignKeyField(TagRow, on_delete="CASCADE")
            create_time = peewee.BigIntegerField()

            class Meta:
                table_name = "t_model_tag"
                indexes = ((("model_version", "tag"), True),)

        self._tag = TagRow
        self._model_tag = ModelTagRow
        with db.connection_context():
            db.create_tables([TagRow, ModelTagRow])

    def tags_of(self, job_id: str, page_size: int = 0, page_token: str = "") -> tuple[list[Tag], str]:
        """One page of a model version's tags, in the order they were added, and the next page's token."""
        tag, link = self._tag, self._model_tag
        query = tag.select(tag.name, tag.description, link.id.alias("link_id")).join(link, on=link.tag == tag.id)
        query = query.where(link.model_version == job_id)
        if page_token:
            query = query.where(link.id > paging.decode_token(page_token)[0])
        size = paging.page_size(page_size)
        with self.db.connection_context():
            rows = list(query.order_by(link.id).limit(size + 1).dicts())
        token = paging.encode_token(rows[size - 1]["link_id"], "") if len(rows) > size else ""
        return [Tag(name=r["name"], description=r["description"]) for r in rows[:size]], token

    def add(self, job_id: str, tag_name: str, model_id: str) -> str:
        """Tag a model version, creating the tag (without description) if it does not exist yet."""
        _check_name(tag_name)
        tag, link = self._tag, self._model_tag
        try:
            with self.db.connection_context(), self.db.atomic():
                # Both writes or neither: a new tag is created together with its first link.
                tag.insert(name=tag_name, create_time=now_ms()).on_conflict_ignore().execute()
                tag_id = tag.select(tag.id).where(tag.name == tag_name).scalar()
                link.insert(model_version=job_id, tag=tag_id, create_time=now_ms()).execute()
        except peewee.IntegrityError:
            raise RegistryError(
                Reason.MODEL_EXISTS,
                f"Model {model_id} {job_id} already been tagged as tag '{tag_name}'.",
                retcode=Retcode.EXCEPTION_ERROR,
            ) from None
        return f"Adding {tag_name} tag for model with job id: {job_id} successfully."

    def remove(self, job_id: str, tag_name: str, model_id: str) -> str:
        """Untag a model version; the tag itself stays, as in FATE."""
        _check_name(tag_name)
        tag, link = self._tag, self._model_tag
        with self.db.connection_context():
            tag_id = tag.select(tag.id).where(tag.name == tag_name).scalar()
            if tag_id is None:
                raise RegistryError(
                    Reason.MODEL_NOT_FOUND, f"Can not found '{tag_name}' tag.", retcode=Retcode.EXCEPTION_ERROR
                )
            # The row count, not an earlier read, tells whether this call removed the link.
            removed = link.delete().where((link.model_version == job_id) & (link.tag == tag_id)).execute()
        if not removed:
            raise RegistryError(
                Reason.MODEL_NOT_FOUND,
                f"Model {model_id} {job_id} does not have tag '{tag_name}'.",
                retcode=Retcode.EXCEPTION_ERROR,
            )
        return f"'{tag_name}' tag has been removed from tag list of model {model_id} {job_id}."


def _check_name(tag_name: str) -> None:
    """FATE's check lets an absent name through as the tag ``'None'``; here a blank name is refused."""
    if not tag_name or not tag_name.strip():
        raise RegistryError(Reason.INVALID_ARGUMENT, "tag_name must not be empty or blank", {"field": "tag_name"})
    if len(tag_name) > MAX_TAG_NAME_LENGTH:
        raise RegistryError(
            Reason.INVALID_ARGUMENT,
            f"tag_name is {len(tag_name)} characters long; at most {MAX_TAG_NAME_LENGTH} are allowed",
            {"field": "tag_name"},
        )
