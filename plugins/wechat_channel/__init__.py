"""The wechat_channel plugin: WeChat Official Account, OAuth identity, WeChat Pay, template messages and the H5 shop."""
from core import Manifest

manifest = Manifest(
    name="wechat_channel",
    version="0.1.0",
    summary="WeChat Official Account, OAuth identity, WeChat Pay, template messages and the H5 shop",
    depends=(),
    migrations="migrations/versions",
    hooks="plugins.wechat_channel.hooks",
    hookspecs="plugins.wechat_channel.hookspecs",
)
